//! Clients that send any request shape the way a hostile client would: HTTP/1.1 written by hand
//! (chunked bodies, odd header spellings, answers read even when the gateway refuses a body
//! midway), and HTTP/2 through the `h2` crate, over TLS (ALPN h2) or in clear text with prior
//! knowledge, with request trailers (which reqwest cannot send).

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one exchange may take before the test calls it a hang.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(15);
/// Pause between the pieces of a chunked body, so they reach Envoy as separate reads.
const CHUNK_PAUSE: Duration = Duration::from_millis(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 on the plain listener.
    Http1,
    /// HTTP/2 over TLS (ALPN h2) on the https listener.
    H2Tls,
    /// HTTP/2 with prior knowledge on the plain listener.
    H2c,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Http1, Protocol::H2Tls, Protocol::H2c];
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    /// Sent with `content-length`.
    Fixed(Vec<u8>),
    /// Sent in these pieces without a length: `transfer-encoding: chunked` in HTTP/1.1, one
    /// DATA frame per piece in HTTP/2.
    Chunked(Vec<Vec<u8>>),
}

impl Body {
    /// Every byte, as the upstream should receive it.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Body::None => Vec::new(),
            Body::Fixed(b) => b.clone(),
            Body::Chunked(pieces) => pieces.concat(),
        }
    }
}

/// One request, as the client writes it.
#[derive(Debug, Clone)]
pub struct Shape {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Names as written (HTTP/2 lower-cases them).
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Request trailers (HTTP/2 only; HTTP/1.1 ignores them).
    pub trailers: Vec<(String, String)>,
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where the gateway listens, and the TLS settings that trust its certificate.
#[derive(Clone)]
pub struct Wire {
    pub http_port: u16,
    pub https_port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Wire {
    /// Any certificate is accepted, as the test client does (`make-cert.sh` makes a self-signed
    /// one that webpki refuses as a CA used as an end entity); signatures are still checked.
    pub fn new(http_port: u16, https_port: u16) -> Wire {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyCertificate(provider.clone()));
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Wire {
            http_port,
            https_port,
            tls: Arc::new(config),
        }
    }

    /// Sends `shape` on a new connection and reads the answer.
    pub async fn send(&self, protocol: Protocol, shape: &Shape) -> Result<Reply, String> {
        let exchange = async {
            match protocol {
                Protocol::Http1 => http1(self.http_port, shape).await,
                Protocol::H2c => {
                    let tcp = connect(self.http_port).await?;
                    h2(tcp, "http", self.http_port, shape).await
                }
                Protocol::H2Tls => {
                    let tcp = connect(self.https_port).await?;
                    let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
                    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                        return Err("the https listener did not negotiate h2 (ALPN)".into());
                    }
                    h2(tls, "https", self.https_port, shape).await
                }
            }
        };
        tokio::time::timeout(EXCHANGE_LIMIT, exchange)
            .await
            .map_err(|_| format!("no answer within {EXCHANGE_LIMIT:?}"))?
    }
}

impl Wire {
    /// Writes `bytes` as they are on the plain listener (malformed HTTP/1.1 included) and reads
    /// one answer.
    pub async fn raw_http1(&self, bytes: &[u8]) -> Result<Reply, String> {
        let exchange = async {
            let (read, mut write) = connect(self.http_port).await?.into_split();
            let bytes = bytes.to_vec();
            let writer = tokio::spawn(async move {
                let _ = write.write_all(&bytes).await;
                let _ = write.flush().await;
                write
            });
            let reply = read_http1(read, false).await;
            writer.abort();
            reply
        };
        tokio::time::timeout(EXCHANGE_LIMIT, exchange)
            .await
            .map_err(|_| format!("no answer within {EXCHANGE_LIMIT:?}"))?
    }
}

/// Accepts the gateway's certificate whatever it is, checking only the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn connect(port: u16) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The request head as written on the wire, names spelled as given.
fn http1_head(shape: &Shape, port: u16) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.1\r\n", shape.method, shape.target);
    head.push_str(&format!("host: localhost:{port}\r\n"));
    for (name, value) in &shape.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match &shape.body {
        Body::None => {}
        Body::Fixed(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
        Body::Chunked(_) => head.push_str("transfer-encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    head.into_bytes()
}

async fn http1(port: u16, shape: &Shape) -> Result<Reply, String> {
    let (read, mut write) = connect(port).await?.into_split();
    let head = http1_head(shape, port);
    let body = shape.body.clone();
    // The body is written beside the reading: the gateway may answer (and stop reading) before
    // the body is complete. The write half is kept open until the answer is read, as closing it
    // would end the request for Envoy.
    let writer = tokio::spawn(async move {
        let _ = write_http1(&mut write, &head, &body).await;
        write
    });
    let reply = read_http1(read, shape.method == "HEAD").await;
    writer.abort();
    reply
}

async fn write_http1(
    write: &mut (impl AsyncWrite + Unpin),
    head: &[u8],
    body: &Body,
) -> std::io::Result<()> {
    write.write_all(head).await?;
    match body {
        Body::None => {}
        Body::Fixed(b) => write.write_all(b).await?,
        Body::Chunked(pieces) => {
            for piece in pieces {
                write
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                write.write_all(piece).await?;
                write.write_all(b"\r\n").await?;
                write.flush().await?;
                tokio::time::sleep(CHUNK_PAUSE).await;
            }
            write.write_all(b"0\r\n\r\n").await?;
        }
    }
    write.flush().await
}

async fn read_http1(read: impl AsyncRead + Unpin, head_request: bool) -> Result<Reply, String> {
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the status line: {e}"))?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading headers: {e}"))?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v): &(String, String)| v.clone())
    };
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
        // No body, whatever the length says.
    } else if let Some(length) = find("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
    } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body = read_chunked(&mut reader).await?;
    } else {
        reader
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

async fn read_chunked(reader: &mut (impl AsyncBufReadExt + Unpin)) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            // Trailers (none expected) up to the empty line.
            loop {
                line.clear();
                reader
                    .read_line(&mut line)
                    .await
                    .map_err(|e| e.to_string())?;
                if line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        reader
            .read_exact(&mut body[start..])
            .await
            .map_err(|e| e.to_string())?;
        body.truncate(start + size);
    }
}

async fn h2<T>(io: T, scheme: &str, port: u16, shape: &Shape) -> Result<Reply, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let reply = h2_exchange(client, scheme, port, shape).await;
    driver.abort();
    reply
}

async fn h2_exchange(
    client: h2::client::SendRequest<Bytes>,
    scheme: &str,
    port: u16,
    shape: &Shape,
) -> Result<Reply, String> {
    let mut request = http::Request::builder()
        .method(shape.method.as_str())
        .uri(format!("{scheme}://localhost:{port}{}", shape.target));
    for (name, value) in &shape.headers {
        request = request.header(name.to_ascii_lowercase(), value);
    }
    if let Body::Fixed(b) = &shape.body {
        request = request.header("content-length", b.len());
    }
    let request = request.body(()).map_err(|e| format!("request: {e}"))?;
    let end_of_stream = matches!(shape.body, Body::None) && shape.trailers.is_empty();
    let mut client = client.ready().await.map_err(|e| format!("h2: {e}"))?;
    let (response, stream) = client
        .send_request(request, end_of_stream)
        .map_err(|e| format!("h2 send: {e}"))?;
    let body = shape.body.clone();
    let trailers = trailer_map(&shape.trailers)?;
    // As in HTTP/1.1, the body goes out beside the reading of the answer; the stream handle is
    // kept until the answer is read.
    let sender = tokio::spawn(async move {
        let mut stream = stream;
        if !end_of_stream {
            let _ = send_h2_body(&mut stream, body, trailers).await;
        }
        stream
    });
    let reply = read_h2(response).await;
    sender.abort();
    reply
}

fn trailer_map(trailers: &[(String, String)]) -> Result<Option<http::HeaderMap>, String> {
    if trailers.is_empty() {
        return Ok(None);
    }
    let mut map = http::HeaderMap::new();
    for (name, value) in trailers {
        let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let value = http::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        map.append(name, value);
    }
    Ok(Some(map))
}

async fn send_h2_body(
    stream: &mut h2::SendStream<Bytes>,
    body: Body,
    trailers: Option<http::HeaderMap>,
) -> Result<(), h2::Error> {
    let last_data_ends = trailers.is_none();
    let pieces = match body {
        Body::None => Vec::new(),
        Body::Fixed(b) => vec![b],
        Body::Chunked(pieces) => pieces,
    };
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        // Sent data beyond the flow-control window is buffered by h2 until Envoy opens it.
        stream.send_data(Bytes::from(piece), last_data_ends && i + 1 == count)?;
        if count > 1 {
            tokio::time::sleep(CHUNK_PAUSE).await;
        }
    }
    match trailers {
        Some(t) => stream.send_trailers(t),
        None if count == 0 => stream.send_data(Bytes::new(), true),
        None => Ok(()),
    }
}

async fn read_h2(response: h2::client::ResponseFuture) -> Result<Reply, String> {
    let response = response.await.map_err(|e| format!("h2 answer: {e}"))?;
    let (parts, mut body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            // Envoy may reset a stream whose request it refused before the request ended, once
            // its answer is complete: that reset carries NO_ERROR.
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => break,
            Err(e) => return Err(format!("h2 answer body: {e}")),
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status: parts.status.as_u16(),
        headers,
        body: bytes,
    })
}

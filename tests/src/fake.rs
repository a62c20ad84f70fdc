//! A misbehaving stand-in for the token-service's gateway listener (fault tests).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Accepts, reads, and answers nothing for this long.
    Slow(Duration),
    /// Answers 200 with a body that is not the protocol's JSON.
    Garbage,
    /// Answers 500.
    Failing,
}

pub struct FakeTokenService {
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl FakeTokenService {
    pub fn start(port: u16, behaviour: Misbehaviour) -> FakeTokenService {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the fake token-service");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream, behaviour));
                }
            }
        });
        FakeTokenService {
            stop,
            port,
            thread: Some(thread),
        }
    }
}

/// One answer per connection (`connection: close`): a fake that kept pooled connections alive
/// would go on answering after it is dropped, when the real token-service is back.
fn serve(mut stream: TcpStream, behaviour: Misbehaviour) {
    let mut buf = [0u8; 4096];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if matches!(stream.read(&mut buf), Ok(0) | Err(_)) {
        return;
    }
    let answer: &[u8] = match behaviour {
        Misbehaviour::Slow(delay) => {
            std::thread::sleep(delay);
            return;
        }
        Misbehaviour::Garbage => {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 14\r\n\r\n<html>oops</p>"
        }
        Misbehaviour::Failing => {
            b"HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        }
    };
    let _ = stream.write_all(answer);
}

impl Drop for FakeTokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

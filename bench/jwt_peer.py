"""RS256 JWTs for the bench's Envoy `jwt_authn` peer, from a key the bench generates itself.

Standard library plus the `openssl` command (which scripts/make-cert.sh needs already): openssl
generates the 2048-bit key and prints its numbers, Python signs (RSASSA-PKCS1-v1_5 with SHA-256,
RFC 7518 §3.3, by the Chinese remainder theorem: about a millisecond a token). The claims have
the shape and size of the token-service's access JWTs (docs/jwt-access-tokens.md §2), so both
peers parse and forward tokens of about the same length.
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import time
import uuid

# DER of DigestInfo{sha256} before the 32-byte digest (RFC 8017 §9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(value, length=None):
    return value.to_bytes(length or (value.bit_length() + 7) // 8, "big")


class RsaKey:
    """A private RSA key's numbers, as `openssl pkey -text` prints them."""

    def __init__(self, numbers, kid):
        self.n, self.e, self.d = numbers["modulus"], numbers["publicExponent"], numbers["privateExponent"]
        self.p, self.q = numbers["prime1"], numbers["prime2"]
        self.dp, self.dq, self.qinv = numbers["exponent1"], numbers["exponent2"], numbers["coefficient"]
        self.size = (self.n.bit_length() + 7) // 8
        self.kid = kid

    @classmethod
    def generate(cls, directory, kid="bench-jwt-authn"):
        pem = os.path.join(directory, f"{kid}.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem],
                       check=True, capture_output=True)
        text = subprocess.run(["openssl", "pkey", "-in", pem, "-noout", "-text"], check=True, capture_output=True,
                              text=True).stdout
        return cls(parse_openssl_text(text), kid)

    def jwks(self):
        """The public key as RFC 7517 JWKS, what `local_jwks` gets inline."""
        return {"keys": [{"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                          "n": b64url(int_bytes(self.n)), "e": b64url(int_bytes(self.e))}]}

    def sign(self, message):
        digest = hashlib.sha256(message).digest()
        t = SHA256_DIGEST_INFO + digest
        encoded = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(encoded, "big")
        m1, m2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = m2 + (self.qinv * (m1 - m2) % self.p) * self.q
        return int_bytes(s, self.size)

    def jwt(self, claims):
        header = {"typ": "at+jwt", "alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}." \
                        f"{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signing_input}.{b64url(self.sign(signing_input.encode()))}"


def parse_openssl_text(text):
    """`openssl pkey -text`: a name ending in ':' at the start of a line, then indented hex bytes
    separated by ':' (or, for the public exponent, the decimal value on the same line)."""
    numbers, name, digits = {}, None, []

    def close():
        if name and digits:
            numbers[name] = int("".join(digits).replace(":", ""), 16)

    for line in text.splitlines():
        inline = re.match(r"^(\w+): (\d+) \(0x[0-9a-f]+\)$", line)
        if inline:
            close()
            name, digits = None, []
            numbers[inline.group(1)] = int(inline.group(2))
        elif re.match(r"^\w+:$", line):
            close()
            name, digits = line[:-1], []
        elif line.startswith(" ") and name:
            digits.append(line.strip())
        else:
            close()
            name, digits = None, []
    close()
    missing = {"modulus", "publicExponent", "privateExponent", "prime1", "prime2", "exponent1", "exponent2",
               "coefficient"} - numbers.keys()
    if missing:
        raise ValueError(f"openssl printed no {', '.join(sorted(missing))}")
    return numbers


def access_token_claims(issuer, consumer, client_id, credential_id, service_id, lifetime=3600):
    """Claims shaped as the token-service's access JWTs (docs/jwt-access-tokens.md §2)."""
    now = int(time.time())
    return {"iss": issuer, "aud": issuer, "sub": client_id, "client_id": client_id, "scope": "steps",
            "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime,
            "consumer": {"id": consumer["id"], "username": consumer.get("username"),
                         "custom_id": consumer.get("custom_id")},
            "credential_id": credential_id, "service_id": service_id}


def jwt_authn_filter(issuer, key, cache):
    """Envoy's jwt_authn as an `http_filters` entry: one provider with the key inline
    (`local_jwks`, no fetch), every request must carry a valid JWT of it; the Authorization
    header goes upstream (as our filter leaves it) and the identity the filter adds as headers
    comes from claims (`claim_to_headers`), so the upstream request is the same. `cache`: the
    provider's `jwt_cache_config` (verified tokens kept by their string) on or off."""
    cache_config = "                  jwt_cache_config: { jwt_cache_size: 1000 }\n" if cache else ""
    jwks = json.dumps(json.dumps(key.jwks()))  # a JSON string is a YAML double-quoted scalar
    return f"""          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: "{issuer}"
                  audiences: ["{issuer}"]
                  forward: true
                  local_jwks:
                    inline_string: {jwks}
                  claim_to_headers:
                  - {{ header_name: x-consumer-id, claim_name: consumer.id }}
                  - {{ header_name: x-consumer-username, claim_name: consumer.username }}
                  - {{ header_name: x-credential-identifier, claim_name: client_id }}
{cache_config}              rules:
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: bench }}
"""

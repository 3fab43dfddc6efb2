//! The server name a TLS client asks for, read from its ClientHello before any TLS is
//! done: TLSRoute sockets pick the route (and, for Passthrough, the backend that will do
//! the handshake) from it, then hand over the bytes read so far untouched.
//!
//! Only what routing needs is parsed (RFC 8446 §4.1.2 and RFC 6066 §3); the handshake
//! message may span several records, as large key shares make it do.

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// The ClientHello is not complete yet.
    Partial,
    /// A whole ClientHello, with its `server_name` (lowercase) if it sent one.
    Complete { server_name: Option<String> },
    /// Not a TLS ClientHello, or one longer than [`MAX_HELLO`].
    Invalid(&'static str),
}

/// The most ClientHello bytes read before giving up (a real one is a few kilobytes).
pub const MAX_HELLO: usize = 64 * 1024;

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// Parses the start of a TLS connection.
pub fn parse(bytes: &[u8]) -> Hello {
    // Reassemble the handshake message from the records that carry it.
    let mut message = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.len() < RECORD_HEADER {
            return partial_or_too_long(bytes);
        }
        if rest[0] != CONTENT_HANDSHAKE {
            return Hello::Invalid("not a TLS handshake record");
        }
        if rest[1] != 0x03 {
            return Hello::Invalid("not a TLS record version");
        }
        let length = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if length == 0 {
            return Hello::Invalid("empty handshake record");
        }
        let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + length) else {
            return partial_or_too_long(bytes);
        };
        message.extend_from_slice(fragment);
        rest = &rest[RECORD_HEADER + length..];
        if message.len() >= 4 {
            if message[0] != HANDSHAKE_CLIENT_HELLO {
                return Hello::Invalid("the first handshake message is not a ClientHello");
            }
            let body_len = u32::from_be_bytes([0, message[1], message[2], message[3]]) as usize;
            if 4 + body_len > MAX_HELLO {
                return Hello::Invalid("ClientHello too long");
            }
            if message.len() >= 4 + body_len {
                return match server_name(&message[4..4 + body_len]) {
                    Ok(server_name) => Hello::Complete { server_name },
                    Err(why) => Hello::Invalid(why),
                };
            }
        }
    }
}

fn partial_or_too_long(bytes: &[u8]) -> Hello {
    if bytes.len() >= MAX_HELLO {
        Hello::Invalid("ClientHello too long")
    } else {
        Hello::Partial
    }
}

/// The `server_name` extension's host name in a ClientHello body.
fn server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    const MALFORMED: &str = "malformed ClientHello";
    let mut r = Reader(body);
    r.skip(2 + 32).ok_or(MALFORMED)?; // legacy_version, random
    let session_id = r.u8().ok_or(MALFORMED)?;
    r.skip(usize::from(session_id)).ok_or(MALFORMED)?;
    let suites = r.u16().ok_or(MALFORMED)?;
    r.skip(usize::from(suites)).ok_or(MALFORMED)?;
    let compression = r.u8().ok_or(MALFORMED)?;
    r.skip(usize::from(compression)).ok_or(MALFORMED)?;
    if r.0.is_empty() {
        // No extensions at all (a very old client).
        return Ok(None);
    }
    let extensions_len = r.u16().ok_or(MALFORMED)?;
    let mut extensions = Reader(r.take(usize::from(extensions_len)).ok_or(MALFORMED)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16().ok_or(MALFORMED)?;
        let len = extensions.u16().ok_or(MALFORMED)?;
        let data = extensions.take(usize::from(len)).ok_or(MALFORMED)?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        let mut list = Reader(data);
        let list_len = list.u16().ok_or(MALFORMED)?;
        let mut names = Reader(list.take(usize::from(list_len)).ok_or(MALFORMED)?);
        while !names.0.is_empty() {
            let name_type = names.u8().ok_or(MALFORMED)?;
            let len = names.u16().ok_or(MALFORMED)?;
            let name = names.take(usize::from(len)).ok_or(MALFORMED)?;
            if name_type == NAME_TYPE_HOST_NAME {
                let name = std::str::from_utf8(name).map_err(|_| "server name is not text")?;
                return Ok(Some(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(drop)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first flight of a real rustls client asking for `name`.
    fn client_hello(name: Option<&str>) -> Vec<u8> {
        use std::sync::Arc;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut config = config;
        config.enable_sni = name.is_some();
        let server =
            rustls::pki_types::ServerName::try_from(name.unwrap_or("no-sni.example").to_string())
                .unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_real_client_hello_names_its_server() {
        let hello = client_hello(Some("Abc.Example.com"));
        assert_eq!(
            parse(&hello),
            Hello::Complete {
                server_name: Some("abc.example.com".into())
            }
        );
        // Every shorter prefix asks for more.
        for cut in [0, 3, 5, 9, hello.len() / 2, hello.len() - 1] {
            assert_eq!(parse(&hello[..cut]), Hello::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn a_client_hello_without_sni_has_no_name() {
        assert_eq!(
            parse(&client_hello(None)),
            Hello::Complete { server_name: None }
        );
    }

    #[test]
    fn a_hello_split_over_records_is_reassembled() {
        let hello = client_hello(Some("split.example.com"));
        let message = &hello[RECORD_HEADER..];
        let (a, b) = message.split_at(40);
        let mut split = Vec::new();
        for fragment in [a, b] {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
            split.extend_from_slice(fragment);
        }
        assert_eq!(
            parse(&split),
            Hello::Complete {
                server_name: Some("split.example.com".into())
            }
        );
        assert_eq!(parse(&split[..split.len() - 1]), Hello::Partial);
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Hello::Invalid(_)
        ));
        assert!(matches!(
            parse(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]),
            Hello::Invalid(_)
        ));
        // A whole ClientHello of 10 bytes: shorter than its fixed fields.
        let mut short = vec![0x16, 0x03, 0x01, 0x00, 0x0e, 0x01, 0x00, 0x00, 0x0a];
        short.extend_from_slice(&[0; 10]);
        assert_eq!(parse(&short), Hello::Invalid("malformed ClientHello"));
    }
}

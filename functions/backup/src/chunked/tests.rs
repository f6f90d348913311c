use super::*;
use std::io::Read;

fn encrypt(key: &[u8], context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut enc = Encryptor::new(key, context, Vec::new()).expect("encryptor");
    // Odd write sizes exercise the buffering across chunk boundaries.
    for piece in message.chunks(7919) {
        enc.write_all(piece).expect("write");
    }
    enc.finish().expect("finish")
}

fn decrypt(key: &[u8], context: &[u8], ct: &[u8]) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut dec = match Decryptor::new(key, context, ct) {
        Ok(d) => d,
        Err(e) => return (out, Some(e)),
    };
    let mut buf = [0u8; 5000];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn error_of(e: Option<io::Error>) -> Option<ChunkError> {
    e.and_then(|e| e.into_inner()).and_then(|inner| inner.downcast::<ChunkError>().ok()).map(|b| *b)
}

#[test]
fn round_trips_every_boundary_length() {
    let key = [7u8; 32];
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5] {
        let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let ct = encrypt(&key, b"ctx", &message);
        let full_chunks = len / CHUNK;
        assert_eq!(ct.len(), HEADER + full_chunks * (CHUNK + TAG) + (len % CHUNK) + TAG, "len {len}");
        let (plain, err) = decrypt(&key, b"ctx", &ct);
        assert!(err.is_none(), "len {len}: {err:?}");
        assert_eq!(plain, message);
    }
}

#[test]
fn tampering_truncation_reordering_and_context_are_refused() {
    let key = [9u8; 32];
    let message: Vec<u8> = (0..3 * CHUNK + 100).map(|i| i as u8).collect();
    let ct = encrypt(&key, b"db=portcullis", &message);
    let mut flipped = ct.clone();
    flipped[HEADER + CHUNK + TAG + 3] ^= 1;
    let (plain, err) = decrypt(&key, b"db=portcullis", &flipped);
    assert_eq!(error_of(err), Some(ChunkError::Chunk { index: 1 }));
    assert_eq!(plain.len(), CHUNK, "only the authenticated first chunk was released");

    let (_, err) = decrypt(&key, b"db=portcullis", &ct[..ct.len() - (100 + TAG)]);
    assert_eq!(error_of(err), Some(ChunkError::Truncated { index: 2 }));

    let mut swapped = ct[..HEADER].to_vec();
    swapped.extend_from_slice(&ct[HEADER + CHUNK + TAG..HEADER + 2 * (CHUNK + TAG)]);
    swapped.extend_from_slice(&ct[HEADER..HEADER + CHUNK + TAG]);
    swapped.extend_from_slice(&ct[HEADER + 2 * (CHUNK + TAG)..]);
    let (plain, err) = decrypt(&key, b"db=portcullis", &swapped);
    assert_eq!(error_of(err), Some(ChunkError::Chunk { index: 0 }));
    assert!(plain.is_empty());

    let (_, err) = decrypt(&key, b"db=other", &ct);
    assert_eq!(error_of(err), Some(ChunkError::Commitment));
    let (_, err) = decrypt(&[1u8; 32], b"db=portcullis", &ct);
    assert_eq!(error_of(err), Some(ChunkError::Commitment));
}

fn vectors() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/wycheproof/c2sp_chunked_encryption_aes_256_gcm_test.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

fn sha512_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data))
}

#[test]
fn wycheproof_cobblestone_vectors() {
    let vectors = vectors();
    let mut valid = 0;
    let mut invalid = 0;
    for group in vectors["testGroups"].as_array().expect("groups") {
        for t in group["tests"].as_array().expect("tests") {
            let id = &t["tcId"];
            let key = hex::decode(t["key"].as_str().expect("key")).expect("hex");
            let ctx = hex::decode(t["ctx"].as_str().expect("ctx")).expect("hex");
            let mut ct = Vec::new();
            flate2::read::ZlibDecoder::new(&hex::decode(t["ct"].as_str().expect("ct")).expect("hex")[..])
                .read_to_end(&mut ct)
                .expect("zlib");
            let (plain, err) = decrypt(&key, &ctx, &ct);
            let expected_len = t["msgLength"].as_u64().map(|n| n as usize);
            if t["result"] == "valid" {
                assert!(err.is_none(), "tcId {id}: {err:?}");
                assert_eq!(Some(plain.len()), expected_len, "tcId {id}");
                assert_eq!(Some(sha512_hex(&plain).as_str()), t["msgSha512"].as_str(), "tcId {id}");
                valid += 1;
            } else {
                assert!(err.is_some(), "tcId {id} ({}) decrypted", t["comment"]);
                // Never a byte past the valid prefix; where the vector names the prefix, it is exact.
                let prefix = expected_len.unwrap_or(0);
                assert!(
                    plain.len() <= prefix,
                    "tcId {id}: released {} bytes past the valid prefix",
                    plain.len()
                );
                if plain.len() == prefix && prefix > 0 {
                    assert_eq!(Some(sha512_hex(&plain).as_str()), t["msgSha512"].as_str(), "tcId {id}");
                }
                invalid += 1;
            }
        }
    }
    assert!(valid >= 5 && invalid >= 20, "{valid} valid, {invalid} invalid");
}

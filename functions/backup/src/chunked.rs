//! c2sp.org/chunked-encryption (v1) with AES-256-GCM and HKDF-Expand SHA-512
//! (Cobblestone-256): authenticated streaming encryption for backups.
//!
//! `salt (24) || commitment (32) || chunks`, each chunk 16 KiB of plaintext
//! sealed with AES-256-GCM under a key and base nonce derived per message; the
//! nonce is the base nonce XOR the chunk counter; the final chunk is always
//! shorter than 16 KiB (possibly empty), which authenticates the length.
//! The commitment is checked before any chunk is decrypted, and the streaming
//! decryptor releases a chunk's plaintext only after it authenticated, so
//! truncation, reordering and tampering never yield unauthenticated bytes.
//! All primitives come from aws-lc-rs.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

pub const CHUNK: usize = 16 * 1024;
pub const TAG: usize = 16;
pub const SALT: usize = 24;
pub const COMMITMENT: usize = 32;
pub const HEADER: usize = SALT + COMMITMENT;
pub const KEY: usize = 32;
/// The spec's hard limit: 2^38 chunks (4 PiB).
const MAX_CHUNKS: u64 = 1 << 38;
const INFO_PREFIX: &[u8] = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00";

/// Why a message does not decrypt (or cannot be encrypted).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChunkError {
    #[error("the input key must be 32 bytes")]
    InvalidKey,
    #[error("the header is truncated")]
    TruncatedHeader,
    #[error("the key commitment does not match: wrong key, wrong context or a modified header")]
    Commitment,
    #[error("chunk {index} does not authenticate (modified, reordered or misplaced)")]
    Chunk { index: u64 },
    #[error("the message is truncated after chunk {index}")]
    Truncated { index: u64 },
    #[error("the message exceeds 2^38 chunks")]
    TooLong,
}

impl From<ChunkError> for io::Error {
    fn from(err: ChunkError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// `(AEAD key, base nonce, commitment)` for an input key, salt and context.
fn derive(
    input_key: &[u8],
    salt: &[u8],
    context: &[u8],
) -> Result<(LessSafeKey, [u8; NONCE_LEN], [u8; COMMITMENT]), ChunkError> {
    if input_key.len() != KEY {
        return Err(ChunkError::InvalidKey);
    }
    // HKDF-Expand only: the input key is already uniformly random (the spec's choice).
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, input_key);
    let mut okm = Zeroizing::new([0u8; KEY + NONCE_LEN + COMMITMENT]);
    prk.expand(&[INFO_PREFIX, salt, context], Len(okm.len()))
        .and_then(|o| o.fill(&mut okm[..]))
        .map_err(|_| ChunkError::InvalidKey)?;
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &okm[..KEY]).map_err(|_| ChunkError::InvalidKey)?);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[KEY..KEY + NONCE_LEN]);
    let mut commitment = [0u8; COMMITMENT];
    commitment.copy_from_slice(&okm[KEY + NONCE_LEN..]);
    Ok((key, nonce, commitment))
}

fn nonce_for(base: &[u8; NONCE_LEN], counter: u64) -> Nonce {
    let mut nonce = *base;
    for (i, b) in counter.to_be_bytes().iter().enumerate() {
        nonce[NONCE_LEN - 8 + i] ^= b;
    }
    Nonce::assume_unique_for_key(nonce)
}

/// Streaming encryption into `W`; call [`Encryptor::finish`] to write the final chunk.
pub struct Encryptor<W: Write> {
    key: LessSafeKey,
    base: [u8; NONCE_LEN],
    counter: u64,
    buffer: Zeroizing<Vec<u8>>,
    out: W,
    /// Set by any failure: a chunk half-written must never be sealed again
    /// (its nonce is spent), so every later call fails.
    failed: bool,
}

impl<W: Write> Encryptor<W> {
    /// Starts a message with a random salt and writes its header.
    pub fn new(input_key: &[u8], context: &[u8], out: W) -> io::Result<Self> {
        let mut salt = [0u8; SALT];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| io::Error::other("no randomness"))?;
        Self::with_salt(input_key, context, &salt, out)
    }

    /// Starts a message with a given salt (it must never repeat for a key).
    pub fn with_salt(input_key: &[u8], context: &[u8], salt: &[u8; SALT], mut out: W) -> io::Result<Self> {
        let (key, base, commitment) = derive(input_key, salt, context)?;
        out.write_all(salt)?;
        out.write_all(&commitment)?;
        Ok(Self {
            key,
            base,
            counter: 0,
            buffer: Zeroizing::new(Vec::with_capacity(CHUNK + TAG)),
            out,
            failed: false,
        })
    }

    fn seal(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the encryption failed earlier"));
        }
        self.failed = true;
        if self.counter >= MAX_CHUNKS {
            return Err(ChunkError::TooLong.into());
        }
        let nonce = nonce_for(&self.base, self.counter);
        self.key
            .seal_in_place_append_tag(nonce, Aad::empty(), &mut *self.buffer)
            .map_err(|_| io::Error::other("AES-GCM seal failed"))?;
        self.out.write_all(&self.buffer)?;
        self.buffer.clear();
        self.counter += 1;
        self.failed = false;
        Ok(())
    }

    /// Seals the final, short chunk (possibly empty) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.buffer.len() == CHUNK {
            // A full buffer is not final: seal it, then the empty final chunk.
            self.seal()?;
        }
        self.seal()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the encryption failed earlier"));
        }
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed only once more data arrives, so the final
        // chunk (sealed by `finish`) is always short, as the format requires.
        if self.buffer.len() == CHUNK {
            self.seal()?;
        }
        let take = (CHUNK - self.buffer.len()).min(data.len());
        self.buffer.extend_from_slice(&data[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Streaming decryption from `R`. Reading yields plaintext of authenticated
/// chunks only; any failure is an `InvalidData` error carrying a [`ChunkError`]
/// and every later read fails too.
pub struct Decryptor<R: Read> {
    key: LessSafeKey,
    base: [u8; NONCE_LEN],
    counter: u64,
    input: R,
    carry: Option<u8>,
    plain: Zeroizing<Vec<u8>>,
    offset: usize,
    state: State,
}

#[derive(Clone, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed(ChunkError),
}

impl<R: Read> Decryptor<R> {
    /// Reads the header and checks the commitment before any chunk is touched.
    pub fn new(input_key: &[u8], context: &[u8], mut input: R) -> io::Result<Self> {
        if input_key.len() != KEY {
            return Err(ChunkError::InvalidKey.into());
        }
        let mut header = [0u8; HEADER];
        read_full(&mut input, &mut header).and_then(|n| {
            if n == HEADER {
                Ok(())
            } else {
                Err(ChunkError::TruncatedHeader.into())
            }
        })?;
        let (key, base, commitment) = derive(input_key, &header[..SALT], context)?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(&commitment, &header[SALT..]).is_err() {
            return Err(ChunkError::Commitment.into());
        }
        Ok(Self {
            key,
            base,
            counter: 0,
            input,
            carry: None,
            plain: Zeroizing::new(Vec::new()),
            offset: 0,
            state: State::Reading,
        })
    }

    /// Chunks authenticated so far.
    pub fn chunks(&self) -> u64 {
        self.counter
    }

    fn next_chunk(&mut self) -> Result<(), ChunkError> {
        // One byte past a full chunk tells a full chunk from the final one.
        let mut block = vec![0u8; CHUNK + TAG + 1];
        let mut filled = 0;
        if let Some(b) = self.carry.take() {
            block[0] = b;
            filled = 1;
        }
        filled += read_full(&mut self.input, &mut block[filled..])
            .map_err(|_| ChunkError::Truncated { index: self.counter })?;
        let is_final = filled <= CHUNK + TAG;
        let sealed_len = if is_final { filled } else { CHUNK + TAG };
        if is_final && (filled < TAG || filled == CHUNK + TAG) {
            return Err(ChunkError::Truncated { index: self.counter });
        }
        if !is_final {
            self.carry = Some(block[CHUNK + TAG]);
        }
        if self.counter >= MAX_CHUNKS {
            return Err(ChunkError::TooLong);
        }
        block.truncate(sealed_len);
        let nonce = nonce_for(&self.base, self.counter);
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut block)
            .map_err(|_| ChunkError::Chunk { index: self.counter })?
            .len();
        block.truncate(plain_len);
        self.plain = Zeroizing::new(block);
        self.offset = 0;
        self.counter += 1;
        if is_final {
            self.state = State::Done;
        }
        Ok(())
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.offset < self.plain.len() {
                let n = (self.plain.len() - self.offset).min(out.len());
                out[..n].copy_from_slice(&self.plain[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            match &self.state {
                State::Done => return Ok(0),
                State::Failed(err) => return Err(err.clone().into()),
                State::Reading => {
                    if let Err(err) = self.next_chunk() {
                        self.state = State::Failed(err.clone());
                        return Err(err.into());
                    }
                }
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;

//! The local server's mail: one `.eml` file per message in a folder (by default
//! `.portcullis/outbox/`), readable by any mail client, and one line on
//! standard error naming the file and the message's link, so a developer can
//! click through. Local use only: the line shows a live token.

use super::{Mail, MailError, MailSender};
use std::path::PathBuf;

/// Writes each message into `dir` (created 0700 if missing), each file 0600.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder the messages are written to.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// A header value on one line (a subject or address never carries a line break
/// into the headers: RFC 5322 header injection).
fn header(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The message as RFC 5322 text: multipart/alternative, text then HTML, both
/// quoted-printable free (8bit UTF-8, which every local client reads).
pub fn to_eml(mail: &Mail) -> String {
    let boundary = format!("portcullis-{}", mail.id);
    format!(
        "Message-ID: <{id}@portcullis.local>\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nX-Portcullis-Kind: {kind}\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\
         --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n\
         --{boundary}--\r\n",
        id = header(&mail.id),
        from = header(&mail.from),
        to = header(&mail.to),
        subject = header(&mail.subject),
        kind = mail.kind.as_str(),
        text = mail.text.as_str(),
        html = mail.html.as_str(),
    )
}

#[async_trait::async_trait]
impl MailSender for Outbox {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let unavailable = |e: std::io::Error| MailError::Unavailable(Box::new(e));
        let name: String = mail.id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if name.is_empty() {
            return Err(MailError::Refused("a message id names no file".into()));
        }
        let dir = self.dir.clone();
        let file = dir.join(format!("{name}.eml"));
        let body = zeroize::Zeroizing::new(to_eml(mail));
        let path = file.clone();
        tokio::task::spawn_blocking(move || write_private(&dir, &path, body.as_bytes()))
            .await
            .map_err(|e| MailError::Unavailable(Box::new(e)))?
            .map_err(unavailable)?;
        let link = super::templates::link_in(mail).map(|l| format!(", link {l}")).unwrap_or_default();
        eprintln!("portcullis: mail ({}) in {}{link}", mail.kind.as_str(), file.display());
        Ok(())
    }
}

fn write_private(dir: &std::path::Path, file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::files::create_private_dir(dir)?;
    crate::files::write_new_private(file, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::templates::{render, Message};
    use crate::mail::MailConfig;

    #[tokio::test]
    async fn each_message_is_one_private_eml_file_with_both_bodies() {
        let dir = std::env::temp_dir().join(format!("pc-outbox-{}", uuid::Uuid::new_v4()));
        let outbox = Outbox::new(&dir);
        let config = MailConfig { product: "Acme\r\nBcc: eve@example.com".into(), ..MailConfig::default() };
        let mail = render(&config, "ada@example.com", &Message::PasswordReset { token: "tok", minutes: 30 });
        outbox.send(&mail).await.expect("written");
        let file = dir.join(format!("{}.eml", mail.id));
        let text = std::fs::read_to_string(&file).expect("the file");
        assert!(text.contains("To: ada@example.com\r\n") && text.contains("text/html"), "{text}");
        assert!(text.contains("#token=tok"), "{text}");
        let headers = text.split("\r\n\r\n").next().unwrap_or_default();
        assert!(!headers.contains("\r\nBcc:"), "a header value broke its line: {headers}");
        assert!(headers.contains("Subject: Reset your Acme  Bcc: eve@example.com password\r\n"), "{headers}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        // The same message twice is refused, never overwritten.
        assert!(outbox.send(&mail).await.is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}

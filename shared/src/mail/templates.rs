//! The messages Portcullis sends, each a text and an HTML body from one
//! template. Every value placed in the HTML is escaped; links are built from the
//! configured base and a token, the token in the fragment (`#token=`) so it
//! never reaches a web server's access log or a `Referer`.

use super::{Mail, MailConfig, MailKind};
use zeroize::Zeroizing;

/// A message about to be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Confirms the address of a new account (or a new address): its link.
    VerifyEmail { token: &'a str, hours: u64 },
    /// Someone tried to register an address that already has an account.
    RegistrationAttempt,
    /// A password reset was asked for: its link.
    PasswordReset { token: &'a str, minutes: u64 },
    /// Something happened to the account (`what` is one line, e.g. "Your password was changed.").
    SecurityNotice { what: &'a str },
}

/// `text` with `& < > " '` escaped for HTML.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn link(config: &MailConfig, action: &str, token: &str) -> String {
    format!("{}/{action}#token={token}", config.link_base.trim_end_matches('/'))
}

/// (kind, subject, paragraphs, link) of a message.
fn parts(config: &MailConfig, message: &Message<'_>) -> (MailKind, String, Vec<String>, Option<String>) {
    let product = &config.product;
    match message {
        Message::VerifyEmail { token, hours } => (
            MailKind::VerifyEmail,
            format!("Confirm your email address for {product}"),
            vec![
                format!("Open the link below to confirm this address for your {product} account."),
                format!("It works once and expires in {hours} hours. If you did not ask for it, ignore this message."),
            ],
            Some(link(config, "verify-email", token)),
        ),
        Message::RegistrationAttempt => (
            MailKind::RegistrationAttempt,
            format!("Someone tried to register with your address at {product}"),
            vec![
                format!("Someone tried to create a {product} account with this address, which already has one."),
                "If it was you, sign in, or reset your password if you have forgotten it. Otherwise you need do nothing: your account is unchanged.".into(),
            ],
            None,
        ),
        Message::PasswordReset { token, minutes } => (
            MailKind::PasswordReset,
            format!("Reset your {product} password"),
            vec![
                format!("Open the link below to choose a new password for your {product} account."),
                format!("It works once and expires in {minutes} minutes; if your account has a second factor, you will need it too. If you did not ask for this, ignore this message: your password is unchanged."),
            ],
            Some(link(config, "reset-password", token)),
        ),
        Message::SecurityNotice { what } => (
            MailKind::SecurityNotice,
            format!("Security notice from {product}"),
            vec![
                (*what).to_owned(),
                "If this was not you, reset your password and review your sessions at once.".into(),
            ],
            None,
        ),
    }
}

/// Renders `message` for `to` with the configuration's product, sender and links.
pub fn render(config: &MailConfig, to: &str, message: &Message<'_>) -> Mail {
    let (kind, subject, paragraphs, link) = parts(config, message);
    let mut text = paragraphs.join("\n\n");
    let mut html = String::from("<!doctype html><html><body>");
    for p in &paragraphs {
        html.push_str(&format!("<p>{}</p>", escape_html(p)));
    }
    if let Some(link) = &link {
        text.push_str(&format!("\n\n{link}\n"));
        let link = escape_html(link);
        html.push_str(&format!("<p><a href=\"{link}\">{link}</a></p>"));
    }
    html.push_str("</body></html>");
    Mail {
        id: uuid::Uuid::new_v4().to_string(),
        kind,
        from: config.from.clone(),
        to: to.to_owned(),
        subject,
        text: Zeroizing::new(text),
        html: Zeroizing::new(html),
    }
}

/// The link a message carries, if any (tests and the outbox's log line).
pub fn link_in(mail: &Mail) -> Option<&str> {
    mail.text.lines().rev().find(|l| l.contains("#token=")).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> MailConfig {
        MailConfig {
            product: "Acme <Cloud> & \"Co\"".into(),
            from: "no-reply@acme.test".into(),
            link_base: "https://acme.test/account/".into(),
        }
    }

    #[test]
    fn a_link_holds_its_token_in_the_fragment_and_the_html_escapes_every_value() {
        let mail = render(&config(), "ada@example.com", &Message::VerifyEmail { token: "t0k3n", hours: 24 });
        assert_eq!(link_in(&mail), Some("https://acme.test/account/verify-email#token=t0k3n"));
        assert!(mail.subject.contains("Acme <Cloud>"), "{}", mail.subject);
        assert!(mail.html.contains("Acme &lt;Cloud&gt; &amp; &quot;Co&quot;"), "{}", mail.html.as_str());
        assert!(!mail.html.contains("<Cloud>"));
        assert_eq!(
            (mail.kind, mail.from.as_str(), mail.to.as_str()),
            (MailKind::VerifyEmail, "no-reply@acme.test", "ada@example.com")
        );
        assert!(!format!("{mail:?}").contains("t0k3n") && !format!("{mail:?}").contains("ada@"));
        let notice = render(&config(), "ada@example.com", &Message::RegistrationAttempt);
        assert_eq!(link_in(&notice), None);
    }

    proptest! {
        #[test]
        fn escaped_html_never_holds_markup(text in "\\PC*") {
            let escaped = escape_html(&text);
            prop_assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('"'));
            let back = escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&");
            prop_assert_eq!(back, text);
        }
    }
}

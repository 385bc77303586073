//! Every message latchkey sends, in one place. Each has a plain-text body and an HTML
//! alternative; values are HTML-escaped in the latter.

use super::Email;

/// Builds the link of an email from a template such as
/// `{public_url}/activate/{uid}/{token}`.
pub fn link(template: &str, public_url: &str, uid: &str, token: &str) -> String {
    template
        .replace("{public_url}", public_url)
        .replace("{uid}", uid)
        .replace("{token}", token)
}

/// The one layout of every account email: greeting, why, a link, and what to do if the
/// reader did not ask for it.
struct LinkMessage<'a> {
    subject: String,
    why: String,
    action: &'a str,
    if_not_you: &'a str,
}

impl LinkMessage<'_> {
    fn render(self, to: &str, username: &str, link: &str) -> Email {
        let text = format!(
            "Hello {username},\n\n{}:\n\n{link}\n\n{}\n",
            self.why, self.if_not_you
        );
        let html = format!(
            "<p>Hello {},</p><p>{}:</p><p><a href=\"{}\">{}</a></p><p>{}</p>",
            escape(username),
            escape(&self.why),
            escape(link),
            escape(self.action),
            escape(self.if_not_you),
        );
        Email {
            to: to.to_owned(),
            subject: self.subject,
            text,
            html,
        }
    }
}

pub fn activation(site: &str, to: &str, username: &str, link: &str) -> Email {
    LinkMessage {
        subject: format!("Activate your {site} account"),
        why: format!("please confirm your email address to activate your {site} account"),
        action: "Activate my account",
        if_not_you: "If you did not sign up, ignore this message.",
    }
    .render(to, username, link)
}

pub fn password_reset(site: &str, to: &str, username: &str, link: &str) -> Email {
    LinkMessage {
        subject: format!("Reset your {site} password"),
        why: format!("someone asked to reset the password of your {site} account; to choose a new one, follow this link"),
        action: "Choose a new password",
        if_not_you: "If it was not you, ignore this message: your password stays as it is.",
    }
    .render(to, username, link)
}

pub fn approved(site: &str, to: &str, username: &str, public_url: &str) -> Email {
    LinkMessage {
        subject: format!("Your {site} account was approved"),
        why: format!("an administrator approved your {site} account; you can log in now"),
        action: "Open the site",
        if_not_you: "If you did not sign up, please tell us by replying to this message.",
    }
    .render(to, username, public_url)
}

/// Sent to the requested address: following the link makes it the account's address.
pub fn email_change(site: &str, to: &str, username: &str, link: &str) -> Email {
    LinkMessage {
        subject: format!("Confirm your new {site} email address"),
        why: format!("someone asked to make this the email address of your {site} account; to confirm it, follow this link"),
        action: "Confirm my new address",
        if_not_you: "If it was not you, ignore this message: nothing changes unless the link is followed.",
    }
    .render(to, username, link)
}

/// Sent to the current address when a change away from it is requested. No link: the
/// mailbox being left may be the one an attacker reads, and a link to "undo" would be a
/// link worth phishing with; the reader is told what to do instead.
pub fn email_change_notice(site: &str, to: &str, username: &str, new_email: &str) -> Email {
    let masked = mask_address(new_email);
    let what = format!(
        "someone asked to change the email address of your {site} account from this address \
         to {masked}. The change takes effect once it is confirmed from the new address."
    );
    let if_you = "If it was you, there is nothing to do.";
    let if_not_you = format!(
        "If it was not you, someone may know your password: change it now, which cancels \
         the request, and contact the {site} support team."
    );
    Email {
        to: to.to_owned(),
        subject: format!("Your {site} email address is being changed"),
        text: format!("Hello {username},\n\n{what}\n\n{if_you}\n\n{if_not_you}\n"),
        html: format!(
            "<p>Hello {},</p><p>{}</p><p>{}</p><p>{}</p>",
            escape(username),
            escape(&what),
            escape(if_you),
            escape(&if_not_you),
        ),
    }
}

/// `nadia@example.com` as `n***@example.com`: enough for the owner to recognise their
/// own request, not enough to hand a stranger reading the old mailbox the new address.
fn mask_address(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let first: String = local.chars().take(1).collect();
    format!("{first}***@{domain}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fill_the_template() {
        assert_eq!(
            link("{public_url}/a/{uid}/{token}", "https://x", "U", "T"),
            "https://x/a/U/T"
        );
    }

    #[test]
    fn html_is_escaped() {
        let e = activation("<site>", "a@b.c", "a&b", "https://x/?a=1&b=2");
        assert!(
            e.html.contains("a&amp;b")
                && e.html.contains("&lt;site&gt;")
                && !e.html.contains("<site>")
        );
        assert!(e.text.contains("https://x/?a=1&b=2"));
    }

    #[test]
    fn the_notice_masks_the_new_address_and_has_no_link() {
        let e = email_change_notice("site", "old@example.com", "ada", "nadia@new.example");
        assert!(e.text.contains("n***@new.example"), "{}", e.text);
        assert!(e.html.contains("n***@new.example"), "{}", e.html);
        for body in [&e.text, &e.html] {
            assert!(!body.contains("nadia"), "{body}");
            assert!(!body.contains("http") && !body.contains("href"), "{body}");
        }
        assert_eq!(mask_address("é@x.y"), "é***@x.y", "characters, not bytes");
    }
}

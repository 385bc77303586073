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
}

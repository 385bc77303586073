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

pub fn activation(site: &str, to: &str, username: &str, link: &str) -> Email {
    let subject = format!("Activate your {site} account");
    let text = format!(
        "Hello {username},\n\nplease confirm your email address to activate your {site} account:\n\n{link}\n\n\
         If you did not sign up, ignore this message.\n"
    );
    let html = format!(
        "<p>Hello {u},</p><p>please confirm your email address to activate your {s} account:</p>\
         <p><a href=\"{l}\">Activate my account</a></p><p>If you did not sign up, ignore this message.</p>",
        u = escape(username),
        s = escape(site),
        l = escape(link),
    );
    Email {
        to: to.to_owned(),
        subject,
        text,
        html,
    }
}

pub fn password_reset(site: &str, to: &str, username: &str, link: &str) -> Email {
    let subject = format!("Reset your {site} password");
    let text = format!(
        "Hello {username},\n\nsomeone asked to reset the password of your {site} account. To choose a new one, \
         follow this link:\n\n{link}\n\nIf it was not you, ignore this message: your password stays as it is.\n"
    );
    let html = format!(
        "<p>Hello {u},</p><p>someone asked to reset the password of your {s} account.</p>\
         <p><a href=\"{l}\">Choose a new password</a></p>\
         <p>If it was not you, ignore this message: your password stays as it is.</p>",
        u = escape(username),
        s = escape(site),
        l = escape(link),
    );
    Email {
        to: to.to_owned(),
        subject,
        text,
        html,
    }
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

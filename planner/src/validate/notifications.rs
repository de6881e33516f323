//! The Repository's notification receivers (docs/notifications.md): each has what its type
//! needs, at the field that lacks it.

use nimbus_schemas::{Receiver, ReceiverType};

use super::common::Check;
use crate::diagnostics::Problem;
use crate::tree::Segment;

pub(super) fn check_receivers(at: &Check<'_>, receivers: &[Receiver], problems: &mut Vec<Problem>) {
    let document = at.document;
    let mut names = std::collections::HashSet::new();
    for (i, receiver) in receivers.iter().enumerate() {
        let path = |field: &'static str| {
            [
                Segment::Key("notifications"),
                Segment::Index(i),
                Segment::Key(field),
            ]
        };
        let problem = |field: &'static str, message: String, label: &str, help: &str| {
            Problem::error(
                "nimbus::notification::receiver",
                message,
                document.label(document.spec_span(&path(field)), label),
            )
            .with_help(help.to_owned())
        };
        let name = &receiver.name;
        if !names.insert(name.as_str()) {
            problems.push(problem(
                "name",
                format!("receiver `{name}` is named twice"),
                "again",
                "give each receiver its own name",
            ));
        }
        match receiver.receiver_type {
            ReceiverType::Webhook | ReceiverType::Slack => match receiver.url.as_deref() {
                None => problems.push(problem(
                    "type",
                    format!("receiver `{name}` needs a url"),
                    "no url",
                    "add `url: https://...`",
                )),
                Some(url)
                    if !(url.starts_with("http://") || url.starts_with("https://"))
                        || url.contains(char::is_whitespace) =>
                {
                    problems.push(problem(
                        "url",
                        format!("receiver `{name}`'s url `{url}` is not an http(s) URL"),
                        "not http:// or https://",
                        "write https://HOST/PATH",
                    ))
                }
                Some(_) => {}
            },
            ReceiverType::Email => {
                match receiver.smtp.as_deref() {
                    None => problems.push(problem(
                        "type",
                        format!("receiver `{name}` needs `smtp: HOST:PORT`"),
                        "no smtp",
                        "add the SMTP relay: `smtp: mail.example.com:25`",
                    )),
                    Some(server)
                        if server.rsplit_once(':').is_none_or(|(host, port)| {
                            host.is_empty() || port.parse::<u16>().is_err()
                        }) =>
                    {
                        problems.push(problem(
                            "smtp",
                            format!("`{server}` is not HOST:PORT"),
                            "not HOST:PORT",
                            "write `smtp: mail.example.com:25`",
                        ))
                    }
                    Some(_) => {}
                }
                if receiver.to.is_empty() {
                    problems.push(problem(
                        "type",
                        format!("receiver `{name}` mails nobody"),
                        "no `to`",
                        "add `to: [ops@example.com]`",
                    ));
                }
                for address in receiver.to.iter().chain(receiver.from.iter()) {
                    if !address.contains('@')
                        || address.contains(|c: char| {
                            c.is_control() || c.is_whitespace() || c == '<' || c == '>'
                        })
                    {
                        problems.push(problem(
                            if receiver.from.as_deref() == Some(address) {
                                "from"
                            } else {
                                "to"
                            },
                            format!("`{address}` is not a mail address"),
                            "not a mail address",
                            "write name@domain",
                        ));
                    }
                }
            }
        }
        if let Some(secret) = &receiver.secret {
            if receiver.receiver_type != ReceiverType::Webhook {
                problems.push(problem(
                    "secret",
                    format!("receiver `{name}` is not a webhook: nothing signs with its secret"),
                    "not a webhook",
                    "remove `secret`",
                ));
            } else {
                at.secret(&path("secret"), secret, problems);
            }
        }
    }
}

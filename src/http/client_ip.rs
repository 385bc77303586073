//! The client's address, as the throttle and the logs see it: the socket peer, unless the
//! peer is a trusted proxy (`server.trusted_proxies`); then the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy. Entries left of it were written
//! by the client and prove nothing, so a spoofed header from an untrusted peer changes
//! nothing, and neither does a forged prefix sent through a trusted one.

use std::future::{Ready, ready};
use std::net::{IpAddr, SocketAddr};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::state::AppState;
use crate::config::ProxyNet;
use crate::db::models::tokens::Device;

/// The client address of `req` under the configured trusted proxies.
pub fn client_ip_of(req: &HttpRequest) -> Option<IpAddr> {
    let state = req.app_data::<web::Data<AppState>>();
    let trusted = state.map_or(&[][..], |s| &s.settings.server.trusted_proxies[..]);
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_ip(
        req.peer_addr().map(|a| a.ip().to_canonical()),
        &forwarded,
        trusted,
    )
}

/// The longest user agent a session keeps (API.md "Sessions").
const USER_AGENT_MAX_CHARS: usize = 256;

/// Where a request comes from, as the session list shows it: the client address as the
/// throttle sees it, and the user agent cut to 256 characters.
#[derive(Debug, Clone)]
pub struct Client {
    ip: String,
    user_agent: String,
}

impl Client {
    pub fn of(req: &HttpRequest) -> Self {
        let ip = client_ip_of(req)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let user_agent = match user_agent.char_indices().nth(USER_AGENT_MAX_CHARS) {
            Some((end, _)) => user_agent[..end].to_owned(),
            None => user_agent,
        };
        Self { ip, user_agent }
    }

    pub fn device(&self) -> Device<'_> {
        Device {
            ip: &self.ip,
            user_agent: &self.user_agent,
        }
    }
}

impl FromRequest for Client {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}

pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[ProxyNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    // Several headers are one list, in order (RFC 9110 §5.3).
    let hops = forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim);
    for hop in hops.rev() {
        // An unreadable hop ends the chain: the last address vouched for is the client.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ProxyNet> {
        list.iter().map(|n| n.parse().expect(n)).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect(s))
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &["1.1.1.1"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("203.0.113.9"), &[], &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxies_yield_the_right_most_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1"]);
        // The client forged "6.6.6.6"; the load balancer appended the real address.
        let chain = ["6.6.6.6, 198.51.100.7", "10.1.1.1"];
        assert_eq!(
            client_ip(ip("192.0.2.1"), &chain, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["[2001:db8::1]:443"], &trusted),
            ip("2001:db8::1")
        );
        // Only proxies in the chain: the left-most of them is as far as it goes.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["10.9.9.9"], &trusted),
            ip("10.9.9.9")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.2"), &[], &trusted), ip("10.0.0.2"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["unknown"], &trusted),
            ip("10.0.0.2")
        );
    }
}

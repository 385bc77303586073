//! Throttling with actix-governor, in the three scopes of API.md: `anon` (per client IP,
//! requests without a valid access token), `user` (per user id, requests with one) and
//! `login` (per client IP, one bucket over the credential endpoints). Each scope is one
//! governor whose key extractor answers [`ThrottleKey::Exempt`] for requests outside the
//! scope; exempt keys are whitelisted. Which scopes a request counts against is the
//! [`Limit`] its route declares in the route table (probes, metrics and `/.well-known/*`
//! are never throttled), never a comparison of raw path strings.
//!
//! Who is asking ([`Caller`]) is worked out once per request and kept in the request's
//! extensions, so the access token is verified once for the throttle and the handler.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_governor::governor::NotUntil;
use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::StateInformationMiddleware;
use actix_governor::{
    Governor, GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ResourceDef;
use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, header};
use actix_web::{HttpMessage, HttpResponse, HttpResponseBuilder, web};

use super::client_ip::client_ip_of;
use super::error::ApiError;
use super::extractors::bearer_token;
use super::routes::{Limit, Route};
use super::state::AppState;
use crate::auth::jwt::{TokenType, Verified};
use crate::config::{ConfigError, Rate, ThrottleSettings};

/// The caller of a request: the client address and, if it presented a valid access
/// token, the token.
#[derive(Clone)]
pub struct Caller {
    pub ip: Option<IpAddr>,
    pub token: Option<Arc<Verified>>,
}

impl Caller {
    /// The caller of `req`, computed on first use and then kept with the request.
    pub fn of(req: &ServiceRequest) -> Caller {
        if let Some(caller) = req.extensions().get::<Caller>() {
            return caller.clone();
        }
        let ip = Self::client_ip(req);
        let state = req.app_data::<web::Data<AppState>>();
        let token = state
            .zip(bearer_token(req.request()))
            .and_then(|(state, token)| state.tokens.verify(&token, Some(TokenType::Access)).ok());
        let caller = Caller { ip, token };
        req.extensions_mut().insert(caller.clone());
        caller
    }
}

impl Caller {
    /// The client address alone (see [`client_ip`]).
    pub fn client_ip(req: &ServiceRequest) -> Option<IpAddr> {
        client_ip_of(req.request())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// Not in this scope: let through without counting.
    Exempt,
    Client(IpAddr),
    User(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Anon,
    User,
    Login,
    Mfa,
}

/// Each operation's [`Limit`], matched the way the router matches: the same path
/// templates, against the same percent-decoded path (`/auth/l%6Fgin` is `/auth/login`
/// here as it is to the router), so no spelling of a path reaches a handler outside the
/// scope its route declares.
#[derive(Debug)]
pub struct RouteLimits(Vec<(ResourceDef, Method, Limit)>);

impl RouteLimits {
    pub fn new(routes: &[Route]) -> Self {
        Self(
            routes
                .iter()
                .map(|r| (ResourceDef::new(r.path.as_str()), r.method.clone(), r.limit))
                .collect(),
        )
    }

    /// The limit of the route that will serve `req`; an unknown path or method (a 404 or
    /// 405) counts as an ordinary request. Worked out once per request (each scope's
    /// governor asks) and then kept with it, like the [`Caller`].
    fn of(&self, req: &ServiceRequest) -> Limit {
        if let Some(limit) = req.extensions().get::<Limit>() {
            return *limit;
        }
        let path = req.match_info().as_str();
        let limit = self
            .0
            .iter()
            .find(|(def, method, _)| method == req.method() && def.is_match(path))
            .map_or(Limit::Caller, |(_, _, limit)| *limit);
        req.extensions_mut().insert(limit);
        limit
    }
}

/// IPv6 clients are counted per /64, the block one subscriber usually holds; otherwise a
/// single host could rotate through addresses and never be throttled.
fn client_key(ip: IpAddr) -> ThrottleKey {
    match ip {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            ThrottleKey::Client(IpAddr::V6(net.into()))
        }
        v4 => ThrottleKey::Client(v4),
    }
}

#[derive(Debug, Clone)]
pub struct ScopeKey {
    scope: Scope,
    routes: Arc<RouteLimits>,
    /// `throttle.enabled`: when off, every request is exempt (the middleware stays in
    /// place, so the app has one shape either way).
    enabled: bool,
}

impl KeyExtractor for ScopeKey {
    type Key = ThrottleKey;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<ThrottleKey, Self::KeyExtractionError> {
        if req.extensions().contains::<SharedVerdict>() {
            // Counted cluster-wide already (`shared_throttle`).
            return Ok(ThrottleKey::Exempt);
        }
        Ok(self.key(req))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        response: HttpResponseBuilder,
    ) -> HttpResponse {
        throttled(retry_after(negative), response)
    }

    fn whitelisted_keys(&self) -> Vec<ThrottleKey> {
        vec![ThrottleKey::Exempt]
    }
}

impl ScopeKey {
    /// The bucket `req` counts against in this scope, or [`ThrottleKey::Exempt`].
    fn key(&self, req: &ServiceRequest) -> ThrottleKey {
        let limit = self.routes.of(req);
        if !self.enabled || limit == Limit::Never {
            return ThrottleKey::Exempt;
        }
        let caller = Caller::of(req);
        let ip_key = || caller.ip.map_or(ThrottleKey::Exempt, client_key);
        match self.scope {
            Scope::Login if limit == Limit::Credentials => ip_key(),
            Scope::Login => ThrottleKey::Exempt,
            Scope::Mfa if limit == Limit::Mfa => ip_key(),
            Scope::Mfa => ThrottleKey::Exempt,
            Scope::Anon if caller.token.is_none() => ip_key(),
            Scope::User => match &caller.token {
                Some(token) => ThrottleKey::User(token.subject.clone()),
                None => ThrottleKey::Exempt,
            },
            Scope::Anon => ThrottleKey::Exempt,
        }
    }
}

/// The 429 of every scope: `Retry-After` (and actix-governor's `x-ratelimit-after`) in
/// whole seconds, and the `throttled` problem.
pub fn throttled(retry_after: u64, mut response: HttpResponseBuilder) -> HttpResponse {
    response.insert_header((header::RETRY_AFTER, retry_after));
    response.insert_header(("x-ratelimit-after", retry_after));
    ApiError::Throttled { retry_after }.render(response)
}

/// Marks a request the shared throttle has counted (and let through): the governors
/// leave it alone.
#[derive(Clone, Copy)]
pub struct SharedVerdict;

/// A bucket a request counts against: the scope's name, its rate, and whose bucket.
pub struct Bucket {
    pub scope: &'static str,
    pub rate: Rate,
    pub key: ThrottleKey,
}
/// Seconds until `not_until`, rounded up: "retry in 0 seconds" would invite an immediate,
/// futile retry.
pub fn retry_after(not_until: &NotUntil<QuantaInstant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

pub type ScopeConfig = GovernorConfig<ScopeKey, StateInformationMiddleware>;

/// The three scopes' governors, built once and shared by every worker (each holds its
/// keyed rate limiter behind an `Arc`).
#[derive(Clone)]
pub struct Throttle {
    pub anon: ScopeConfig,
    pub user: ScopeConfig,
    pub login: ScopeConfig,
    pub mfa: ScopeConfig,
    /// Each scope's key extractor and rate, in the order the governors answer a request
    /// (the outermost first): what the shared throttle counts against.
    scopes: Arc<[(&'static str, ScopeKey, Rate)]>,
}

fn scope(
    name: &str,
    scope: Scope,
    rate: Rate,
    enabled: bool,
    routes: &Arc<RouteLimits>,
) -> Result<ScopeConfig, ConfigError> {
    let routes = Arc::clone(routes);
    GovernorConfigBuilder::default()
        .period(rate.replenish_interval())
        .burst_size(rate.count)
        .key_extractor(ScopeKey {
            scope,
            routes,
            enabled,
        })
        .use_headers()
        .finish()
        .ok_or_else(|| ConfigError(format!("`throttle.{name}`: rate {rate} is too high")))
}

impl Throttle {
    pub fn new(settings: &ThrottleSettings, routes: RouteLimits) -> Result<Self, ConfigError> {
        let on = settings.enabled;
        let routes = Arc::new(routes);
        let extractor = |scope| ScopeKey {
            scope,
            routes: Arc::clone(&routes),
            enabled: on,
        };
        let scopes = [
            ("login", extractor(Scope::Login), settings.login),
            ("mfa", extractor(Scope::Mfa), settings.mfa),
            ("user", extractor(Scope::User), settings.user),
            ("anon", extractor(Scope::Anon), settings.anon),
        ];
        Ok(Self {
            anon: scope("anon", Scope::Anon, settings.anon, on, &routes)?,
            user: scope("user", Scope::User, settings.user, on, &routes)?,
            login: scope("login", Scope::Login, settings.login, on, &routes)?,
            mfa: scope("mfa", Scope::Mfa, settings.mfa, on, &routes)?,
            scopes: scopes.into(),
        })
    }

    /// The buckets `req` counts against, the one whose headers the answer carries first.
    pub fn buckets(&self, req: &ServiceRequest) -> Vec<Bucket> {
        self.scopes
            .iter()
            .map(|(scope, extractor, rate)| Bucket {
                scope,
                rate: *rate,
                key: extractor.key(req),
            })
            .filter(|b| b.key != ThrottleKey::Exempt)
            .collect()
    }

    pub fn anon(&self) -> Governor<ScopeKey, StateInformationMiddleware> {
        Governor::new(&self.anon)
    }

    pub fn user(&self) -> Governor<ScopeKey, StateInformationMiddleware> {
        Governor::new(&self.user)
    }

    pub fn login(&self) -> Governor<ScopeKey, StateInformationMiddleware> {
        Governor::new(&self.login)
    }

    pub fn mfa(&self) -> Governor<ScopeKey, StateInformationMiddleware> {
        Governor::new(&self.mfa)
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded by the clients
    /// seen in the last few minutes. Runs until the server's runtime stops.
    pub fn spawn_purge(&self, every: Duration) {
        let limiters = [
            self.anon.limiter().clone(),
            self.user.limiter().clone(),
            self.login.limiter().clone(),
            self.mfa.limiter().clone(),
        ];
        drop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                for limiter in &limiters {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        }));
    }
}

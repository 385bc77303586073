//! Staff administration of users: the paginated, searchable list and reading, changing
//! and deleting any user. Every handler takes a [`StaffUser`], so authorization happens
//! before anything else.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};

use super::Route;
use crate::accounts::{self, StaffUpdate};
use crate::db::models::groups;
use crate::db::models::user_list::{self, OrderField, UserFilter, UserOrder};
use crate::db::models::users::{User, UserChanges};
use crate::domain::{
    CLAIMS_MAX_BYTES, CustomClaims, GroupName, RESERVED_CLAIMS, UserId, check_bio, check_name,
};
use crate::http::body::{BodySpec, Kind, Refused, bounds, optional};
use crate::http::error::ProblemCode as Code;
use crate::http::error::{ApiError, FieldErrors};
use crate::http::extractors::StaffUser;
use crate::http::fields::{Fields, JsonBody};
use crate::http::openapi::schemas::UserListQuery;
use crate::http::pagination::{COUNT_BOUND, Page, PageRequest, Total};
use crate::http::state::AppState;
use crate::http::views::UserView;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Caller, list),
        route!(Caller, read),
        route!(Caller, update, STAFF_UPDATE),
        route!(Caller, delete),
    ]
}

const STAFF_UPDATE: BodySpec = BodySpec {
    name: "StaffUserUpdate",
    description: "What staff may change about a user; absent fields stay as they are.",
    fields: &[
        optional(
            "is_active",
            Kind::Bool,
            "`false` revokes the user's refresh tokens and blocks the account (even one not yet activated); `true` lifts that, and on a user awaiting approval approves it (and emails them). Staff cannot deactivate themselves.",
        ),
        optional(
            "is_staff",
            Kind::Bool,
            "Staff cannot remove their own staff status.",
        ),
        optional(
            "groups",
            Kind::TextList {
                item: bounds::GROUP_NAME,
                max_items: bounds::GROUPS_MAX_ITEMS,
            },
            "Replaces the user's groups (a set: a name given twice counts once); every name must exist.",
        ),
        optional(
            "claims",
            Kind::Object {
                max_bytes: CLAIMS_MAX_BYTES,
                reserved: RESERVED_CLAIMS,
                names: Refused::Controls,
            },
            "Replaces the custom claims merged into access tokens: at most 4 KiB as JSON, no reserved claim names.",
        ),
        optional("first_name", Kind::Text(bounds::NAME), ""),
        optional("last_name", Kind::Text(bounds::NAME), ""),
        optional("bio", Kind::Text(bounds::BIO), ""),
    ],
    one_of: &[],
};

/// A parsed `GET /users` query string.
struct ListQuery {
    filter: UserFilter,
    order: UserOrder,
    page: PageRequest,
    /// The parameters as given, for the pagination links.
    pairs: Vec<(String, String)>,
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn parse_order(value: &str) -> Option<UserOrder> {
    let (descending, name) = match value.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, value),
    };
    let field = match name {
        "username" => OrderField::Username,
        "email" => OrderField::Email,
        "date_joined" => OrderField::DateJoined,
        "last_login" => OrderField::LastLogin,
        _ => return None,
    };
    Some(UserOrder { field, descending })
}

/// Longest `search` or `group` value: the longest email address (nothing longer can match).
const QUERY_TEXT_MAX_CHARS: usize = 254;

impl ListQuery {
    /// Every bad or unknown parameter is recorded in `errors`, keyed by its name. An empty
    /// `search` or `group` means no filter (an empty search box); other empty values are
    /// errors.
    fn parse(raw: &str, errors: &mut FieldErrors) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::Malformed(format!("bad query string: {e}")))?;
        let mut query = Self {
            filter: UserFilter::default(),
            order: UserOrder::default(),
            page: PageRequest::default(),
            pairs: Vec::new(),
        };
        for (name, value) in &pairs {
            let name = name.as_str();
            let text = || {
                if value.contains('\0') {
                    Err("Null characters are not allowed.")
                } else if value.chars().count() > QUERY_TEXT_MAX_CHARS {
                    Err("Ensure this value has no more than 254 characters.")
                } else {
                    Ok((!value.is_empty()).then(|| value.clone()))
                }
            };
            let boolean = || parse_bool(value).map(Some).ok_or("Must be true or false.");
            let parsed = match name {
                "search" => text().map(|t| query.filter.search = t),
                "group" => text().map(|t| query.filter.group = t),
                "is_active" => boolean().map(|b| query.filter.is_active = b),
                "is_staff" => boolean().map(|b| query.filter.is_staff = b),
                "ordering" => parse_order(value)
                    .map(|order| query.order = order)
                    .ok_or("Must be one of username, email, date_joined, last_login, optionally prefixed with \"-\"."),
                _ => query
                    .page
                    .accept(name, value)
                    .unwrap_or(Err("Unknown query parameter.")),
            };
            if let Err(message) = parsed {
                errors
                    .entry(name.to_owned())
                    .or_default()
                    .push(message.to_owned());
            }
        }
        query.pairs = pairs;
        Ok(query)
    }
}

/// What the list query found.
enum Listing {
    UnknownGroup,
    /// Other parameters were bad (reported with an unknown group, if any).
    Invalid,
    BeyondLastPage,
    Page {
        total: Total,
        /// The page's rows, and one more past the count's bound.
        users: Vec<User>,
        groups: HashMap<String, Vec<String>>,
    },
}

#[utoipa::path(
    get,
    path = "/users",
    operation_id = "list_users",
    tag = "Administration",
    summary = "List users",
    description = "Paginated, searchable and filterable; `page_size` is capped at 100. \
                   `count` is exact up to 10,000; when more users match it is 10,000 and \
                   `count_exact` is false, and `next` still leads on to the last page.",
    security(("bearer" = [])),
    params(UserListQuery),
    responses((status = 200, description = "One page of users.", body = Page<UserView>)),
    extensions(("x-problems" = json!([
        Code::MalformedRequest,
        Code::ValidationFailed,
        Code::PermissionDenied,
        Code::MfaRequired,
        Code::NotFound,
    ]))),
)]
async fn list(
    state: web::Data<AppState>,
    _staff: StaffUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::new();
    let query = ListQuery::parse(req.query_string(), &mut errors)?;
    let (filter, order, request) = (query.filter.clone(), query.order, query.page);
    let valid = errors.is_empty();
    let listing = state
        .db
        .run(move |conn| {
            if let Some(group) = &filter.group
                && !groups::exists(conn, group)?
            {
                return Ok(Listing::UnknownGroup);
            }
            if !valid {
                return Ok(Listing::Invalid);
            }
            let bound = COUNT_BOUND as i64;
            // Both fit an i64: the size is at most 100 and `start` checked the offset.
            let (size, Some(start)) = (request.size as i64, request.start()) else {
                return Ok(Listing::BeyondLastPage);
            };
            let (total, users) = if let Some((counted, users)) =
                user_list::few_matches_page(conn, &filter, order, bound, size, start)?
            {
                (Total::from_bounded(counted.unsigned_abs()), users)
            } else {
                let counted = user_list::count_up_to(conn, &filter, bound + 1)?;
                let total = Total::from_bounded(counted.max(0).unsigned_abs());
                let Ok(offset) = request.offset(total) else {
                    return Ok(Listing::BeyondLastPage);
                };
                let limit = request.rows_to_fetch(total) as i64;
                let page = user_list::page(conn, &filter, order, total.exact, limit, offset)?;
                (total, page)
            };
            // Past the count's bound the last page is only found by reading it.
            if users.is_empty() && request.number > 1 {
                return Ok(Listing::BeyondLastPage);
            }
            let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
            let groups = groups::names_of_each(conn, &ids)?;
            Ok(Listing::Page {
                total,
                users,
                groups,
            })
        })
        .await?;
    let (total, users, mut groups) = match listing {
        Listing::UnknownGroup => {
            errors.insert(
                "group".into(),
                vec!["Select a valid choice. That group does not exist.".into()],
            );
            return Err(ApiError::Validation(errors));
        }
        Listing::Invalid => return Err(ApiError::Validation(errors)),
        Listing::BeyondLastPage => return Err(ApiError::NotFound),
        Listing::Page {
            total,
            users,
            groups,
        } => (total, users, groups),
    };
    let results = users
        .iter()
        .map(|u| UserView::new(u, groups.remove(&u.id).unwrap_or_default()))
        .collect();
    let base = format!(
        "{}/users",
        state.settings.public_url().trim_end_matches('/')
    );
    Ok(HttpResponse::Ok().json(Page::new(results, total, request, &base, &query.pairs)))
}

/// The `{id}` path segment as a user id; anything that is not one is simply not found.
pub(super) fn user_id(path: &web::Path<String>) -> Result<String, ApiError> {
    path.parse::<UserId>()
        .map(|id| id.to_string())
        .map_err(|_| ApiError::NotFound)
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    operation_id = "get_user",
    tag = "Administration",
    summary = "Read a user",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "The user's id.")),
    responses((status = 200, description = "The user.", body = UserView)),
    extensions(("x-problems" = json!([Code::PermissionDenied,
        Code::MfaRequired, Code::NotFound]))),
)]
async fn read(
    state: web::Data<AppState>,
    _staff: StaffUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path)?;
    let (user, groups) = state
        .db
        .run(move |conn| groups::user_with_groups(conn, &id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(UserView::new(&user, groups)))
}

#[utoipa::path(
    patch,
    path = "/users/{id}",
    operation_id = "update_user",
    tag = "Administration",
    summary = "Change a user",
    description = "Deactivating revokes the user's refresh tokens; activating a user awaiting \
                   approval approves it and emails them. The last active staff user cannot be \
                   deactivated or demoted (403 `permission_denied`).",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "The user's id.")),
    responses((status = 200, description = "The updated user.", body = UserView)),
    extensions(("x-problems" = json!([Code::PermissionDenied,
        Code::MfaRequired, Code::NotFound]))),
)]
async fn update(
    state: web::Data<AppState>,
    StaffUser(staff): StaffUser,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path)?;
    let mut f = Fields::new(body);
    let is_active = f.optional_bool("is_active");
    let is_staff = f.optional_bool("is_staff");
    // A set: the same name twice is one membership (not a unique-key violation).
    let groups = f
        .optional_list("groups", |name| {
            GroupName::parse(name).map(GroupName::into_string)
        })
        .map(|mut names| {
            names.sort_unstable();
            names.dedup();
            names
        });
    let claims = f
        .optional_object("claims")
        .and_then(|value| f.check("claims", CustomClaims::parse(value)));
    let first_name = f.optional_checked("first_name", check_name);
    let last_name = f.optional_checked("last_name", check_name);
    let bio = f.optional_checked("bio", check_bio);
    // Locking oneself out is refused; the last-staff rule covers everyone else.
    if staff.user.id == id {
        if is_staff == Some(false) {
            f.reject(
                "is_staff",
                vec!["You cannot remove your own staff status.".into()],
            );
        }
        if is_active == Some(false) {
            f.reject(
                "is_active",
                vec!["You cannot deactivate your own account.".into()],
            );
        }
    }
    let update = f.finish(|| {
        Some(StaffUpdate {
            changes: UserChanges {
                first_name,
                last_name,
                bio,
                is_active,
                is_staff,
                claims: claims.map(|c| c.to_json()),
            },
            groups,
        })
    })?;
    let (settings, hooks) = (state.settings.clone(), state.webhooks.clone());
    let (user, groups) = state
        .db
        .write(move |conn| {
            Ok(accounts::update_by_staff(
                conn, &settings, &hooks, &id, update,
            ))
        })
        .await??;
    log::info!(target: "latchkey::accounts", "staff {} updated user {}", staff.user.id, user.id);
    state.outbox.wake();
    Ok(HttpResponse::Ok().json(UserView::new(&user, groups)))
}

#[utoipa::path(
    delete,
    path = "/users/{id}",
    operation_id = "delete_user",
    tag = "Administration",
    summary = "Delete a user",
    description = "The user and all its tokens are gone. The last active staff user cannot \
                   be deleted (403 `permission_denied`).",
    security(("bearer" = [])),
    params(("id" = String, Path, format = "uuid", description = "The user's id.")),
    responses((status = 204, description = "The user is deleted.")),
    extensions(("x-problems" = json!([Code::PermissionDenied,
        Code::MfaRequired, Code::NotFound]))),
)]
async fn delete(
    state: web::Data<AppState>,
    StaffUser(staff): StaffUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path)?;
    let target = id.clone();
    let hooks = state.webhooks.clone();
    state
        .db
        .write(move |conn| Ok(accounts::delete(conn, &hooks, &target)))
        .await??;
    log::info!(target: "latchkey::accounts", "staff {} deleted user {id}", staff.user.id);
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_reports_every_bad_parameter() {
        let mut errors = FieldErrors::new();
        let raw = "is_active=maybe&ordering=-password&page=0&colour=red&page_size=";
        assert!(ListQuery::parse(raw, &mut errors).is_ok());
        let names: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["colour", "is_active", "ordering", "page", "page_size"]
        );
    }

    #[test]
    fn list_query_reads_filters_and_ignores_an_empty_group() {
        let mut errors = FieldErrors::new();
        let raw = "search=Ada&is_staff=FALSE&is_active=1&ordering=-last_login&group=&page_size=500";
        let q = ListQuery::parse(raw, &mut errors).unwrap_or_else(|_| panic!("rejected"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(q.filter.search.as_deref(), Some("Ada"));
        assert_eq!(
            (q.filter.is_active, q.filter.is_staff),
            (Some(true), Some(false))
        );
        assert_eq!(q.filter.group, None);
        assert_eq!(
            q.order,
            UserOrder {
                field: OrderField::LastLogin,
                descending: true
            }
        );
        assert_eq!(q.page.size, 100);
    }
}

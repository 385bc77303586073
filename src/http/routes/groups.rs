//! Staff administration of groups. Membership is changed through `PATCH /users/{id}`.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::Route;
use crate::db::DbError;
use crate::db::models::groups;
use crate::domain::GroupName;
use crate::http::body::{BodySpec, Kind, bounds, required};
use crate::http::error::ApiError;
use crate::http::error::ProblemCode as Code;
use crate::http::extractors::StaffUser;
use crate::http::fields::{Fields, JsonBody};
use crate::http::state::AppState;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route!(Caller, list),
        route!(Caller, create, NEW_GROUP),
        route!(Caller, delete),
    ]
}

const NEW_GROUP: BodySpec = BodySpec {
    name: "NewGroup",
    description: "A group to create.",
    fields: &[required(
        "name",
        Kind::Text(bounds::GROUP_NAME),
        "Letters, digits and `_ . - @ + :`; case-sensitive.",
    )],
    one_of: &[],
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Group)]
struct GroupView {
    #[schema(example = "editors")]
    name: String,
    member_count: i64,
}

#[utoipa::path(
    get,
    path = "/groups",
    operation_id = "list_groups",
    tag = "Administration",
    summary = "List groups",
    description = "Every group with its number of members.",
    security(("bearer" = [])),
    responses((status = 200, description = "All groups.", body = [GroupView])),
    extensions(("x-problems" = json!([Code::PermissionDenied, Code::MfaRequired]))),
)]
async fn list(state: web::Data<AppState>, _staff: StaffUser) -> Result<HttpResponse, ApiError> {
    let all = state.db.run(groups::all_with_member_counts).await?;
    let views: Vec<GroupView> = all
        .into_iter()
        .map(|(name, member_count)| GroupView { name, member_count })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[utoipa::path(
    post,
    path = "/groups",
    operation_id = "create_group",
    tag = "Administration",
    summary = "Create a group",
    description = "Members are added with `PATCH /users/{id}`.",
    security(("bearer" = [])),
    responses((status = 201, description = "The new, empty group.", body = GroupView)),
    extensions(("x-problems" = json!([Code::PermissionDenied,
        Code::MfaRequired, Code::Conflict]))),
)]
async fn create(
    state: web::Data<AppState>,
    StaffUser(staff): StaffUser,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let mut f = Fields::new(body);
    let name = f.required_str("name");
    let name = name.and_then(|n| f.check("name", GroupName::parse(&n)));
    let name = f.finish(|| name)?.into_string();
    let new = name.clone();
    match state.db.write(move |conn| groups::create(conn, &new)).await {
        Ok(()) => {}
        Err(DbError::UniqueViolation(_)) => {
            return Err(ApiError::Conflict(format!(
                "a group named {name} already exists"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    log::info!(target: "latchkey::accounts", "staff {} created group {name}", staff.user.id);
    Ok(HttpResponse::Created().json(GroupView {
        name,
        member_count: 0,
    }))
}

#[utoipa::path(
    delete,
    path = "/groups/{name}",
    operation_id = "delete_group",
    tag = "Administration",
    summary = "Delete a group",
    description = "Its members simply lose it.",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The group's name.")),
    responses((status = 204, description = "The group is deleted.")),
    extensions(("x-problems" = json!([Code::PermissionDenied,
        Code::MfaRequired, Code::NotFound]))),
)]
async fn delete(
    state: web::Data<AppState>,
    StaffUser(staff): StaffUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A name no group can have (a NUL, a slash...) names no group.
    let name = GroupName::parse(&path)
        .map_err(|_| ApiError::NotFound)?
        .into_string();
    let target = name.clone();
    if !state
        .db
        .write(move |conn| groups::delete(conn, &target))
        .await?
    {
        return Err(ApiError::NotFound);
    }
    log::info!(target: "latchkey::accounts", "staff {} deleted group {name}", staff.user.id);
    Ok(HttpResponse::NoContent().finish())
}

r"""Schemathesis hooks for `.ci/schemathesis`: what a schema cannot say, said once, by name.

What no JSON Schema can state, or Schemathesis cannot read, and how the run deals with it:

1. Two fields that must be equal (a new password and its confirmation): JSON Schema has
   no `$data`. `map_case` copies the password into its confirmation in *positive* cases
   only, so schema-valid registrations, resets and changes get past that check and reach
   the rest of the server (negative cases are left as generated).

2. Rejections that depend on data the schema cannot know: a wrong current password, an
   unknown uid or token, a common password, similarity to the username, an unknown group,
   a staff member changing their own flags, a name that is valid as sent but not once
   NFKC-normalised (JSON Schema has no normalisation), claims over 4 KiB as JSON. `ALLOWED`
   lists each one: the operation, the field and the message of latchkey's 400
   `validation_failed` (exact, or a regular expression where the message names the
   value), why no schema can state it, and, where the cause shows in the request, a test
   that it is there. A "schema-valid request rejected" failure is dropped only when
   *every* field error of the response is listed for that operation; anything else
   still fails.
   The run writes how often each entry was used to $LATCHKEY_ST_EXCUSED (JSON), which
   the CI script prints, so an entry that stops being needed shows up as unused.

3. Unicode property classes. The username and group name patterns use `\p{Alpha}` (the
   letters of Unicode's Alphabetic property, as Rust's `char::is_alphanumeric` counts
   them). Schemathesis reads `\p{...}` through a fixed table of Latin-only approximations
   (`\p{Alpha}` as `a-zA-Z` plus Latin-1 and Latin Extended letters), for generating and
   for its own validation alike, so in negative mode it may take a CJK or Greek letter
   for a pattern violation. `filter_failure` drops a "schema-violating request accepted"
   failure only when the body it sent is valid after all under the operation's schema
   evaluated by jsonschema-rs itself (full Unicode classes, formats checked), and only the
   body was meant to be invalid.

4. The stateful phase builds requests from earlier answers, and may put fields of an
   answer into a body where the schema allows none (`additionalProperties: false`). A
   "schema-valid request rejected" failure whose body the operation's schema, evaluated
   by jsonschema-rs, refuses is not a failure: latchkey rejected invalid data.

And one request the run must not make: deleting its own staff user ($LATCHKEY_ST_STAFF_ID,
which Schemathesis reads from the token's `sub`), which would leave the rest of the run
unauthenticated. `before_call` points that request at an id no user has.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import jsonschema_rs
import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData

# Operations whose body holds a new password and its confirmation.
CONFIRMED = {
    "POST /auth/register": ("password", "password_confirm"),
    "POST /auth/password/reset/confirm": ("new_password", "new_password_confirm"),
    "POST /users/me/password": ("new_password", "new_password_confirm"),
}

WRONG_PASSWORD = "Password is incorrect."
UNKNOWN_UID = "Invalid user id or user doesn't exist."
BAD_LINK_TOKEN = "Invalid or expired token."
TOO_COMMON = "This password is too common."
TOO_SIMILAR = "The password is too similar to the username or email."
BAD_USERNAME = ("Enter a valid username. This value may contain only letters, numbers, "
                "and @/./+/-/_ characters.")
BAD_GROUP_NAME = ("Enter a valid group name. This value may contain only letters, numbers, "
                  "and _/./-/@/+/: characters.")
TOO_LONG = re.compile(r"Ensure this field has no more than \d+ characters\.")


@dataclass(frozen=True)
class Allowed:
    operation: str
    field: str
    message: str | re.Pattern[str]
    reason: str
    when: Callable[[object], bool] | None = None

    def covers(self, case, field: str, message: str) -> bool:
        if (self.operation, self.field) != (case.operation.label, field):
            return False
        if isinstance(self.message, re.Pattern):
            matches = self.message.fullmatch(message) is not None
        else:
            matches = self.message == message
        return matches and (self.when is None or self.when(case))


def _body_schema(case) -> dict | None:
    for body in case.operation.body:
        if body.media_type == case.media_type:
            return body.resolved_schema
    return None


def _changed_by_nfkc(field: str) -> Callable[[object], bool]:
    """Whether a string at `field` (or in the list there) is valid as sent and invalid once
    NFKC-normalised, as latchkey normalises names before checking them: `ŀ` is a letter,
    its normal form `l·` holds a middle dot; `ǆ` is one character, `dž` two."""

    def test(case) -> bool:
        schema = _body_schema(case)
        if schema is None or not isinstance(case.body, dict):
            return False
        field_schema = schema.get("properties", {}).get(field, {})
        field_schema = field_schema.get("items", field_schema)
        check = jsonschema_rs.validator_for(field_schema)
        value = case.body.get(field)
        values = value if isinstance(value, list) else [value]
        return any(
            isinstance(v, str)
            and check.is_valid(v)
            and not check.is_valid(unicodedata.normalize("NFKC", v))
            for v in values
        )

    return test


def _claims(case):
    return case.body.get("claims") if isinstance(case.body, dict) else None


def _claims_over_4_kib(case) -> bool:
    """As latchkey measures it: compact JSON, UTF-8."""
    claims = _claims(case)
    compact = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
    return isinstance(claims, dict) and len(compact) > 4096


def _normalised_names(operation: str, field: str, invalid: str) -> list[Allowed]:
    reason = "valid as sent, not once NFKC-normalised (JSON Schema has no normalisation)"
    return [
        Allowed(operation, field, invalid, reason, _changed_by_nfkc(field)),
        Allowed(operation, field, TOO_LONG, reason, _changed_by_nfkc(field)),
    ]


def _new_password(operation: str, field: str) -> list[Allowed]:
    return [
        Allowed(operation, field, TOO_COMMON,
                "Django's list of 20,000 common passwords is data, not a pattern"),
        Allowed(operation, field, TOO_SIMILAR,
                "similarity is to the username and email: another field, or the stored account"),
    ]


ALLOWED: list[Allowed] = [
    # The caller's password is a secret the generator cannot know.
    Allowed("POST /users/me/password", "current_password", WRONG_PASSWORD,
            "the caller's current password is not something a schema can hold"),
    Allowed("DELETE /users/me", "current_password", WRONG_PASSWORD,
            "the caller's current password is not something a schema can hold"),
    Allowed("POST /users/me/email", "current_password", WRONG_PASSWORD,
            "the caller's current password is not something a schema can hold"),
    Allowed("POST /users/me/username", "current_password", WRONG_PASSWORD,
            "the caller's current password is not something a schema can hold"),
    Allowed("POST /users/me/email", "new_email", "This is already your email address.",
            "the caller's own address is data, not a pattern"),
    # Two-factor login: the caller's password, a code from an authenticator app the
    # generator does not hold, and whether TOTP is on or being set up (account state).
    *[Allowed(op, "current_password", WRONG_PASSWORD,
              "the caller's current password is not something a schema can hold")
      for op in ("POST /users/me/mfa/totp", "DELETE /users/me/mfa/totp",
                 "POST /users/me/mfa/recovery-codes")],
    *[Allowed(op, "code", "Invalid code.", "a code from the caller's authenticator app")
      for op in ("POST /users/me/mfa/totp/confirm", "DELETE /users/me/mfa/totp",
                 "POST /users/me/mfa/recovery-codes")],
    *[Allowed(op, "non_field_errors", "Two-factor login is not on for this account.",
              "whether TOTP is on is account state")
      for op in ("DELETE /users/me/mfa/totp", "POST /users/me/mfa/recovery-codes")],
    Allowed("POST /users/me/mfa/totp/confirm", "non_field_errors",
            "No enrolment is pending: start one with POST /users/me/mfa/totp.",
            "whether an enrolment is pending is account state"),
    # The refresh token is optional in the body only because the refresh cookie may carry
    # it instead: with neither, it is missing (a condition on a cookie no schema states).
    *[Allowed(op, "refresh_token", "This field is required.",
              "required unless the refresh cookie is sent")
      for op in ("POST /auth/token/refresh", "POST /auth/logout")],
    # Emailed links: the uid must name an existing user, the token must be one we signed.
    Allowed("POST /auth/activate", "uid", UNKNOWN_UID, "an unknown user id"),
    Allowed("POST /auth/activate", "token", BAD_LINK_TOKEN, "a token latchkey did not sign"),
    Allowed("POST /auth/password/reset/confirm", "uid", UNKNOWN_UID, "an unknown user id"),
    Allowed("POST /auth/email/confirm", "uid", UNKNOWN_UID, "an unknown user id"),
    Allowed("POST /auth/email/confirm", "token", BAD_LINK_TOKEN, "a token latchkey did not sign"),
    Allowed("POST /auth/password/reset/confirm", "token", BAD_LINK_TOKEN,
            "a token latchkey did not sign"),
    *_new_password("POST /auth/register", "password"),
    *_new_password("POST /auth/password/reset/confirm", "new_password"),
    *_new_password("POST /users/me/password", "new_password"),
    # Group names must exist: the set of groups is data.
    Allowed("GET /users", "group", "Select a valid choice. That group does not exist.",
            "an unknown group name"),
    Allowed("PATCH /users/{id}", "groups", re.compile(r"Object with name=.+ does not exist\."),
            "an unknown group name"),
    *_normalised_names("POST /auth/register", "username", BAD_USERNAME),
    *_normalised_names("POST /users/me/username", "new_username", BAD_USERNAME),
    *_normalised_names("POST /groups", "name", BAD_GROUP_NAME),
    *_normalised_names("PATCH /users/{id}", "groups", BAD_GROUP_NAME),
    # Custom claims: their size in bytes.
    Allowed("PATCH /users/{id}", "claims",
            re.compile(r"Ensure the claims object is at most 4096 bytes as JSON \(it is \d+\)\."),
            "the size of the serialized object: no JSON Schema keyword measures bytes",
            _claims_over_4_kib),
    # The same body is fine for another user: the rule is about who calls.
    Allowed("PATCH /users/{id}", "is_active", "You cannot deactivate your own account.",
            "depends on whether {id} is the caller"),
    Allowed("PATCH /users/{id}", "is_staff", "You cannot remove your own staff status.",
            "depends on whether {id} is the caller"),
]

_used: Counter[str] = Counter()


def _excuses(case, response) -> list[Allowed] | None:
    """The entries covering every field error of a 400 `validation_failed`, or `None`."""
    if response.status_code != 400:
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if problem.get("code") != "validation_failed" or not isinstance(errors, dict) or not errors:
        return None
    found = []
    for field, messages in errors.items():
        for message in messages:
            entry = next((a for a in ALLOWED if a.covers(case, field, message)), None)
            if entry is None:
                return None
            found.append(entry)
    return found


def _body_valid_after_all(case) -> bool:
    """Whether a case meant to be invalid only in its body sent a body that its schema,
    evaluated exactly, accepts (see the module doc, 3)."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.BODY):
        return False
    if any(
        meta.is_negative_at(location)
        for location in ParameterLocation
        if location != ParameterLocation.BODY
    ):
        return False
    schema = _body_schema(case)
    if schema is None:
        return False
    return jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(case.body)


def _body_invalid_after_all(case) -> bool:
    """Whether a case reported as schema-valid sent a body its schema, evaluated exactly,
    refuses: the stateful phase fills bodies from earlier answers (a problem's `errors`
    object, say) past `additionalProperties: false` (see the module doc, 4)."""
    schema = _body_schema(case)
    if schema is None or case.body is None or not isinstance(case.body, dict):
        return False
    return not jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(case.body)


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keeps every failure but a schema-valid request refused only for listed reasons, and
    an "invalid" body that is valid once `\\p{...}` is read exactly."""
    if isinstance(failure, AcceptedNegativeData) and _body_valid_after_all(case):
        _used["any body: valid once \\p{Alpha} is read with full Unicode (not a failure)"] += 1
        return False
    if not isinstance(failure, RejectedPositiveData):
        return True
    if _body_invalid_after_all(case):
        _used["any body: not schema-valid after all (stateful data from an earlier answer)"] += 1
        return False
    excuses = _excuses(case, response)
    if excuses is None:
        return True
    for entry in excuses:
        _used[f"{entry.operation} {entry.field}: {entry.reason}"] += 1
    return False


@schemathesis.hook
def map_case(context, case):
    """In positive cases, the confirmation repeats the password (see the module doc)."""
    pair = CONFIRMED.get(case.operation.label)
    meta = case.meta
    if (
        pair is not None
        and meta is not None
        and meta.generation.mode.is_positive
        and isinstance(case.body, dict)
        and isinstance(case.body.get(pair[0]), str)
        and pair[1] in case.body
    ):
        case.body[pair[1]] = case.body[pair[0]]
    return case


STAFF_ID = os.environ.get("LATCHKEY_ST_STAFF_ID")
NOBODY = "00000000-0000-0000-0000-000000000000"


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """The run's own credentials stay alive (see the module doc)."""
    params = case.path_parameters
    if case.operation.label == "DELETE /users/{id}" and params and params.get("id") == STAFF_ID:
        params["id"] = NOBODY


@atexit.register
def _report() -> None:
    path = os.environ.get("LATCHKEY_ST_EXCUSED")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"used": dict(_used), "listed": len(ALLOWED)}, out, indent=1)

// Shared by both backends: see diesel.toml.

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        username_key -> Text,
        email -> Text,
        email_key -> Text,
        password_hash -> Text,
        first_name -> Text,
        last_name -> Text,
        bio -> Text,
        is_active -> Bool,
        is_staff -> Bool,
        email_verified -> Bool,
        approval_pending -> Bool,
        claims -> Text,
        date_joined -> Timestamp,
        last_login -> Nullable<Timestamp>,
        disabled_by_staff -> Bool,
        pending_email -> Nullable<Text>,
        email_change_requested_at -> Nullable<Timestamp>,
        mfa_enabled -> Bool,
    }
}

diesel::table! {
    groups (name) {
        name -> Text,
    }
}

diesel::table! {
    user_groups (user_id, group_name) {
        user_id -> Text,
        group_name -> Text,
    }
}

diesel::table! {
    token_families (id) {
        id -> Text,
        user_id -> Text,
        current_jti -> Text,
        previous_jti -> Nullable<Text>,
        rotated_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        revoked_reason -> Nullable<Text>,
        current_issued_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        ip -> Text,
        user_agent -> Text,
        amr -> Text,
    }
}

diesel::table! {
    outstanding_tokens (jti) {
        jti -> Text,
        family_id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    blacklisted_tokens (jti) {
        jti -> Text,
        family_id -> Text,
        reason -> Text,
        blacklisted_at -> Timestamp,
    }
}

diesel::joinable!(user_groups -> users (user_id));
diesel::joinable!(user_groups -> groups (group_name));
diesel::joinable!(token_families -> users (user_id));
diesel::joinable!(outstanding_tokens -> token_families (family_id));
diesel::joinable!(blacklisted_tokens -> outstanding_tokens (jti));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    groups,
    user_groups,
    token_families,
    outstanding_tokens,
    blacklisted_tokens
);

diesel::table! {
    email_outbox (id) {
        id -> Text,
        recipient -> Text,
        subject -> Text,
        text_body -> Text,
        html_body -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        purpose -> Nullable<Text>,
        sent_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    user_totp (user_id) {
        user_id -> Text,
        secret -> Nullable<Text>,
        pending_secret -> Nullable<Text>,
        last_step -> BigInt,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Text,
        code_hash -> Text,
    }
}

diesel::table! {
    mfa_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        password_fingerprint -> Text,
        expires_at -> Timestamp,
        failures -> Integer,
        used -> Bool,
    }
}

diesel::table! {
    webhook_outbox (id) {
        id -> Text,
        event_id -> Text,
        endpoint -> Text,
        event_type -> Text,
        body -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    link_requests (id) {
        id -> Text,
        purpose -> Text,
        email_key -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        resolved_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
    }
}

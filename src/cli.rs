//! The operator command line of OPERATIONS.md.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Parser, Subcommand};

use crate::app::{Application, StartupError};
use crate::auth::{keys, password};
use crate::config::{JwtAlgorithm, Settings};
use crate::db::models::tokens::Revoke;
use crate::db::models::users::{NewUser, Taken, User};
use crate::db::models::{db_time, mfa, tokens};
use crate::db::{Database, DbConnection};
use crate::domain::{Email, PasswordPolicy, UserId, Username};
use crate::webhooks::delivery::Sender;
use crate::webhooks::{Event, UserChange, Webhooks};
use diesel::Connection;

#[derive(Parser, Debug)]
#[command(name = "latchkey", version, about = "JWT-issuing identity service")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the HTTP service (the default), migrating first if configured.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create an active, verified staff user.
    Createsuperuser {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Signing-key utilities.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Delete expired refresh-token families, their tokens and blacklist rows.
    FlushExpired,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// User account utilities.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Webhook utilities.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
}

#[derive(Subcommand, Debug)]
enum WebhooksCommand {
    /// Deliver a signed `ping` event to a configured endpoint now and print its answer.
    SendTest {
        /// One of `webhooks.endpoints`' URLs.
        #[arg(long)]
        url: String,
    },
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Remove a user's TOTP secret and recovery codes and end their sessions (lost device).
    MfaReset { username: String },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Write a new private key (PKCS#8 PEM; HS256: a random secret), mode 0600.
    Generate {
        #[arg(long, value_enum, ignore_case = true, default_value_t = JwtAlgorithm::ES256)]
        algorithm: JwtAlgorithm,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs the command; errors are printed for the operator and give exit status 1.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Migrate => Settings::load().map_err(StartupError::from).and_then(|s| {
            Database::connect_once(&s.database, true)?;
            println!("migrations applied");
            Ok(())
        }),
        Command::Createsuperuser {
            username,
            email,
            password_stdin,
        } => createsuperuser(&username, &email, password_stdin),
        Command::Keys {
            command: KeysCommand::Generate { algorithm, out },
        } => keys::write_new_key(&out, algorithm)
            .map(|()| println!("wrote a new {algorithm} key to {}", out.display()))
            .map_err(StartupError::from),
        Command::FlushExpired => flush_expired(),
        Command::CheckConfig => check_config(),
        Command::Users {
            command: UsersCommand::MfaReset { username },
        } => mfa_reset(&username),
        Command::Webhooks {
            command: WebhooksCommand::SendTest { url },
        } => send_test(&url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), StartupError> {
    let settings = Settings::load()?;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped()
            .await
            .map_err(|source| StartupError::Io {
                key: "server",
                source,
            })?;
        log::info!(target: "latchkey", "stopped");
        Ok(())
    })
}

fn open_database() -> Result<(Settings, DbConnection), StartupError> {
    let settings = Settings::load()?;
    let conn = Database::connect_once(&settings.database, settings.database.migrate_on_start)?;
    Ok((settings, conn))
}

/// The configured endpoints, for commands that record events (the running service
/// delivers them).
fn webhooks(settings: &Settings) -> Result<Webhooks, StartupError> {
    Ok(Webhooks::load(&settings.webhooks).map_err(crate::config::ConfigError)?)
}

/// Sends a `ping` to the endpoint configured at `url`; a non-2xx answer is an error.
fn send_test(url: &str) -> Result<(), StartupError> {
    let settings = Settings::load()?;
    let hooks = webhooks(&settings)?;
    let endpoint = hooks.endpoint(url).ok_or_else(|| {
        crate::config::ConfigError(format!("{url} is not one of `webhooks.endpoints`"))
    })?;
    let sender = Sender::new(settings.webhooks.timeout).map_err(StartupError::Webhook)?;
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let body = crate::webhooks::body("ping", Utc::now(), &serde_json::json!({}));
    let answer = actix_web::rt::System::new()
        .block_on(sender.send(endpoint, &id, &body))
        .map_err(|why| StartupError::Webhook(format!("{url}: {why}")))?;
    println!("HTTP {}", answer.status);
    if !answer.body.is_empty() {
        println!("{}", answer.body);
    }
    if answer.accepted() {
        Ok(())
    } else {
        Err(StartupError::Webhook(format!(
            "{url} answered HTTP {}",
            answer.status
        )))
    }
}

fn flush_expired() -> Result<(), StartupError> {
    let (_, mut conn) = open_database()?;
    let (tokens, families) = tokens::delete_expired(&mut conn, Utc::now(), tokens::PURGE_BATCH)?;
    mfa::delete_expired_tokens(&mut conn, Utc::now())?;
    println!("deleted {tokens} expired refresh tokens and {families} expired token families");
    Ok(())
}

fn mfa_reset(username: &str) -> Result<(), StartupError> {
    let (settings, mut conn) = open_database()?;
    let user = User::find_by_username_key(&mut conn, &Username::key_of(username))?
        .ok_or_else(|| crate::config::ConfigError(format!("no user named {username:?}")))?;
    let hooks = webhooks(&settings)?;
    mfa::remove(&mut conn, &user.id, None, &Revoke::now("mfa_reset", &hooks))?;
    println!(
        "two-factor login removed for {}; their sessions are revoked",
        user.username
    );
    Ok(())
}

fn check_config() -> Result<(), StartupError> {
    let settings = Settings::load()?;
    let mut tree =
        serde_json::to_value(&settings).map_err(|e| crate::config::ConfigError(e.to_string()))?;
    // Secret settings mask themselves; this catches a password in any other URL.
    crate::config::redact::json_tree(&mut tree);
    let text = serde_json::to_string_pretty(&tree)
        .map_err(|e| crate::config::ConfigError(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn invalid(what: &str, problems: Vec<String>) -> StartupError {
    crate::config::ConfigError(format!("{what}: {}", problems.join(" "))).into()
}

fn createsuperuser(username: &str, email: &str, password_stdin: bool) -> Result<(), StartupError> {
    let username = Username::parse(username).map_err(|p| invalid("--username", p))?;
    let email = Email::parse(email).map_err(|p| invalid("--email", p))?;
    let raw = read_password(password_stdin).map_err(|source| StartupError::Io {
        key: "password",
        source,
    })?;
    let (settings, mut conn) = open_database()?;
    let policy = PasswordPolicy {
        min_length: settings.password.min_length,
    };
    let password = policy
        .parse(&raw, &[username.as_str(), email.as_str()])
        .map_err(|p| invalid("password", p))?;
    let hash = password::hash_blocking(&password, settings.password.bcrypt_cost);
    let id = UserId::new().to_string();
    let new = NewUser {
        id: &id,
        username: username.as_str(),
        username_key: &username.key(),
        email: email.as_str(),
        email_key: &email.key(),
        password_hash: &hash,
        first_name: "",
        last_name: "",
        bio: "",
        is_active: true,
        is_staff: true,
        email_verified: true,
        approval_pending: false,
        date_joined: db_time(Utc::now()),
    };
    let hooks = webhooks(&settings)?;
    let created = conn.transaction(|conn| {
        let user = User::insert(conn, &new)?;
        let event = Event::User(UserChange::Created, &user);
        hooks.record(conn, &event, Utc::now())
    });
    match created {
        Ok(()) => {
            println!("created staff user {username} ({id})");
            Ok(())
        }
        Err(e) => Err(match User::taken(&e) {
            Some(Taken::Username) => invalid(
                "--username",
                vec!["a user with that username already exists".into()],
            ),
            Some(Taken::Email) => invalid(
                "--email",
                vec!["a user with that email already exists".into()],
            ),
            None => e.into(),
        }),
    }
}

/// One line from standard input (the newline is not part of it), or an interactive prompt
/// with confirmation.
fn read_password(from_stdin: bool) -> std::io::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_owned());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Password (again): ")?;
    if first != again {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the passwords do not match",
        ));
    }
    Ok(first)
}

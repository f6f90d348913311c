//! `portcullis`: the local server, database migrations, and (as their issues
//! land) administration, keys and backups.

mod forward;
mod gateway;
mod policy;

use clap::{Parser, Subcommand};
use portcullis_shared::adapters::mysql::apply_migrations;
use portcullis_shared::config::Config;
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Portcullis security suite: local server and operations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the whole HTTP contract locally, emulating API Gateway (authorizer first).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "PORTCULLIS_ADDR", default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Forward-auth: every request for no Portcullis route is decided by the
        /// authorizer against the policy, and an allowed one is passed to this
        /// backend (http://host:port) with the caller in X-Portcullis-* headers.
        #[arg(long, env = "PORTCULLIS_UPSTREAM")]
        upstream: Option<String>,
    },
    /// Database schema commands.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Token-signing key commands (uses the same PORTCULLIS_* configuration as the functions).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Encrypted backups: run one, verify one, or restore one into an empty database.
    /// Uses PORTCULLIS_DATABASE_URL (the backup reader), the key provider settings, and
    /// PORTCULLIS_BACKUP_BUCKET (S3) or PORTCULLIS_BACKUP_DIR (a local directory).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// The access-control policy (PORTCULLIS_POLICY_FILE, else the bundled one).
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Session table commands.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key. Functions that start afterwards sign with it; the JWKS
    /// publishes it with the previous key, so earlier tokens stay valid until they expire.
    Rotate,
    /// List the signing keys, newest first: kid, generation, state (current, previous,
    /// retired, revoked).
    List,
    /// Revoke a compromised signing key: it leaves the JWKS, its tokens are refused and
    /// no function signs with it again, everywhere within 60 seconds (docs/security/keys.md).
    /// Run it with the schema owner's PORTCULLIS_DATABASE_URL: no function may revoke keys.
    Revoke {
        /// The key's `kid` (see `portcullis keys list`).
        kid: String,
        /// Required to revoke the current key: add a new key first, then revoke this one.
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a backup, read it back from the store, then write its manifest.
    Run,
    /// Check a backup of this database end to end (manifest MAC, digest, every
    /// chunk, row counts), writing nothing.
    Verify { backup_id: String },
    /// Check a backup, then load it into an empty database: one with no tables
    /// (the schema migrations are applied) or with the backup's schema and no rows.
    /// All rows commit together, after every check; on failure nothing stays.
    Restore {
        backup_id: String,
        #[arg(long)]
        into: String,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Create the DynamoDB session table (for emulators and development; AWS uses the template).
    CreateTable {
        #[arg(long, env = "PORTCULLIS_DYNAMODB_TABLE")]
        table: String,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply pending schema migrations (run as the schema owner, not a function user).
    Migrate {
        /// mysql://owner:password@host:3306/portcullis
        #[arg(long, env = "PORTCULLIS_MIGRATE_URL")]
        url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    portcullis_shared::telemetry::init();
    match Cli::parse().command {
        Command::Serve { addr, upstream } => {
            let config = Config::from_env()?;
            // Beside the local server's data (`.portcullis/`), where the upstream finds it.
            let dir = config.sqlite_file.parent().filter(|p| !p.as_os_str().is_empty());
            let secret_file = dir.map_or_else(
                || std::path::PathBuf::from(portcullis_shared::forwarded::DEFAULT_SECRET_FILE),
                |d| d.join("upstream-secret"),
            );
            let upstream =
                upstream.as_deref().map(|url| forward::Upstream::new(url, &secret_file)).transpose()?;
            gateway::serve(config, addr, upstream).await
        }
        Command::Keys { command } => keys(command).await,
        Command::Policy { command } => policy::run(command),
        Command::Backup { command } => backup(command).await,
        Command::Sessions { command: SessionsCommand::CreateTable { table } } => {
            let client = aws_sdk_dynamodb::Client::new(portcullis_shared::aws::aws_config().await);
            portcullis_shared::adapters::dynamo::create_table(&client, &table).await?;
            println!("created table {table}");
            Ok(())
        }
        Command::Db { command: DbCommand::Migrate { url } } => {
            let url = SecretString::from(url);
            let opts = mysql_opts(&url)?;
            let mut conn = mysql_async::Conn::new(opts).await?;
            let applied = apply_migrations(&mut conn).await?;
            println!("applied migrations: {applied:?}");
            Ok(())
        }
    }
}

/// `portcullis backup …`: against the configured MySQL database, into S3
/// (`PORTCULLIS_BACKUP_BUCKET`) or a local folder.
async fn backup(command: BackupCommand) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let portcullis_shared::config::StoreBackend::Mysql { .. } = &config.store else {
        anyhow::bail!("PORTCULLIS_STORE must be `mysql` (with PORTCULLIS_DATABASE_URL) for backups");
    };
    let opts = portcullis_shared::runtime::database_opts(&config).await?;
    let database =
        opts.db_name().ok_or_else(|| anyhow::anyhow!("PORTCULLIS_DATABASE_URL must name the database"))?;
    // A fresh folder only this user can enter: nobody else on the machine can
    // plant links for the ciphertext files or swap them between two reads.
    let scratch = std::env::temp_dir().join(format!("portcullis-backup-{}", uuid::Uuid::new_v4().simple()));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&scratch)?;
    let bar = progress_bar(&command);
    let reporter = bar.clone();
    let backup = portcullis_backup::Backup {
        database: database.to_owned(),
        store: backup_store(&config).await,
        keys: portcullis_shared::runtime::key_provider(&config)?,
        clock: std::sync::Arc::new(portcullis_shared::clock::SystemClock),
        scratch: scratch.clone(),
        progress: Some(std::sync::Arc::new(move |bytes| reporter.set_position(bytes))),
    };
    let outcome = async {
        Ok::<_, anyhow::Error>(match command {
            BackupCommand::Run => backup.run(&mut mysql_async::Conn::new(opts).await?).await?,
            BackupCommand::Verify { backup_id } => backup.check(&backup_id, None).await?,
            BackupCommand::Restore { backup_id, into } => {
                let mut target = mysql_async::Conn::new(mysql_opts(&SecretString::from(into))?).await?;
                backup.check(&backup_id, Some(&mut target)).await?
            }
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let manifest = outcome?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(())
}

/// Where backups go: the S3 bucket when one is configured, else a local folder.
async fn backup_store(config: &Config) -> std::sync::Arc<dyn portcullis_backup::BackupStore> {
    // Said every time: a bucket left blank must not pass for one in use.
    match config.backup.bucket.clone() {
        Some(bucket) => {
            eprintln!("backups in s3://{bucket}");
            std::sync::Arc::new(portcullis_backup::S3Store {
                client: aws_sdk_s3::Client::new(portcullis_shared::aws::aws_config().await),
                bucket,
                kms_key_id: config.backup.kms_key_id.clone(),
            })
        }
        None => {
            let dir = config.backup.dir.clone().unwrap_or_else(|| ".portcullis/backups".into());
            eprintln!("backups in the local folder {} (PORTCULLIS_BACKUP_BUCKET is not set)", dir.display());
            std::sync::Arc::new(portcullis_backup::LocalStore { dir })
        }
    }
}

/// A progress line on a terminal (indicatif draws nothing when stderr is not one).
fn progress_bar(command: &BackupCommand) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(match command {
        BackupCommand::Run => "backing up",
        BackupCommand::Verify { .. } => "verifying",
        BackupCommand::Restore { .. } => "restoring",
    });
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// `portcullis keys …`: against the configured key store (MySQL) and key provider.
async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use portcullis_shared::crypto;
    let config = Config::from_env()?;
    if let portcullis_shared::config::StoreBackend::Memory = config.store {
        anyhow::bail!(
            "PORTCULLIS_STORE=memory keeps keys in the server process; manage keys against sqlite or mysql"
        );
    }
    let backends = portcullis_shared::runtime::Backends::open(&config).await?;
    let store = backends.keys.as_ref();
    let now = portcullis_shared::clock::Clock::now_secs(&portcullis_shared::clock::SystemClock);
    match command {
        KeysCommand::Rotate => {
            let provider = portcullis_shared::runtime::key_provider(&config)?;
            let kid = crypto::rotate_signing_key(store, provider.as_ref(), now).await?;
            println!("new signing key: {kid}");
        }
        KeysCommand::List => {
            println!("{}", serde_json::to_string_pretty(&crypto::signing_keys(store).await?)?)
        }
        KeysCommand::Revoke { kid, rotate } => {
            let provider = portcullis_shared::runtime::key_provider(&config)?;
            let done = crypto::revoke_signing_key(store, provider.as_ref(), &kid, rotate, now).await?;
            if let Some(new) = &done.rotated_to {
                println!("new signing key: {new}");
            }
            if done.newly_revoked {
                println!("revoked signing key: {kid}");
            } else {
                println!("signing key {kid} was already revoked");
            }
        }
    }
    Ok(())
}

/// Connection options for a URL, with the CA bundle named by
/// `PORTCULLIS_DATABASE_CA_FILE` when set (TLS then required, only those roots).
/// Only that variable is read: the rest of the configuration does not apply to
/// a URL given on the command line.
fn mysql_opts(url: &SecretString) -> anyhow::Result<mysql_async::Opts> {
    Ok(Config::database_ca_only()?.mysql_opts(url)?)
}

//! `portcullis`: the local server, database migrations, and (as their issues
//! land) administration, keys and backups.

mod gateway;

use clap::{Parser, Subcommand};
use portcullis_shared::config::Config;
use portcullis_shared::store::apply_migrations;
use secrecy::{ExposeSecret, SecretString};

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
        Command::Serve { addr } => {
            let config = Config::from_env()?;
            gateway::serve(config, addr).await
        }
        Command::Keys { command: KeysCommand::Rotate } => {
            let config = Config::from_env()?;
            if let portcullis_shared::config::StoreBackend::Memory = config.store {
                anyhow::bail!(
                    "PORTCULLIS_STORE=memory keeps keys in the server process; rotate against mysql"
                );
            }
            let backends = portcullis_shared::runtime::Backends::open(&config).await?;
            let provider = portcullis_shared::runtime::key_provider(&config).await?;
            let now = portcullis_shared::clock::Clock::now_secs(&portcullis_shared::clock::SystemClock);
            let kid =
                portcullis_shared::crypto::rotate_signing_key(backends.keys.as_ref(), provider.as_ref(), now)
                    .await?;
            println!("new signing key: {kid}");
            Ok(())
        }
        Command::Sessions { command: SessionsCommand::CreateTable { table } } => {
            let client = aws_sdk_dynamodb::Client::new(portcullis_shared::runtime::aws_config().await);
            portcullis_shared::sessions::create_table(&client, &table).await?;
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

fn mysql_opts(url: &SecretString) -> anyhow::Result<mysql_async::Opts> {
    Ok(mysql_async::Opts::from_url(url.expose_secret())?)
}

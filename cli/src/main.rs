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

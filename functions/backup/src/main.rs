//! Lambda wiring for `backup` (EventBridge schedule): one backup per invocation.
//! A failure is an invocation error, so the Errors alarm fires; no manifest is
//! written for a failed run.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use portcullis_backup::{Backup, S3Store};
use portcullis_shared::aws::aws_config;
use portcullis_shared::clock::SystemClock;
use portcullis_shared::config::{Config, StoreBackend};
use portcullis_shared::runtime::{database_opts, key_provider};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    portcullis_shared::telemetry::init();
    let config = Config::from_env()?;
    let StoreBackend::Mysql { .. } = &config.store else {
        return Err("PORTCULLIS_STORE must be `mysql` for backups".into());
    };
    let bucket = config.backup.bucket.clone().ok_or("PORTCULLIS_BACKUP_BUCKET is required")?;
    let opts = database_opts(&config).await?;
    let database = opts.db_name().ok_or("PORTCULLIS_DATABASE_URL must name the database")?.to_owned();
    let backup = Arc::new(Backup {
        database,
        store: Arc::new(S3Store {
            client: aws_sdk_s3::Client::new(aws_config().await),
            bucket,
            kms_key_id: config.backup.kms_key_id.clone(),
        }),
        keys: key_provider(&config)?,
        clock: Arc::new(SystemClock),
        scratch: std::env::temp_dir().join("portcullis-backup"),
        progress: None,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let backup = backup.clone();
        let opts = opts.clone();
        async move {
            if !portcullis_backup::is_schedule(&event.payload) {
                // Fails the invocation (the Errors alarm sees it); operators use `portcullis backup run`.
                return Err("not the EventBridge schedule: no backup taken".into());
            }
            let mut conn = mysql_async::Conn::new(opts).await?;
            let manifest = backup.run(&mut conn).await?;
            Ok::<_, Error>(serde_json::to_value(manifest)?)
        }
    }))
    .await
}

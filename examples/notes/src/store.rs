//! The notes table (DynamoDB): partition key `user_id`, sort key `note_id`, so a
//! user's notes are one partition and the key itself says whose a note is.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use portcullis_shared::ApiError;
use serde::Serialize;
use std::collections::HashMap;

/// The most notes one list answers.
pub const LIST_LIMIT: i32 = 100;

/// One note as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub user_id: String,
    pub note_id: String,
    pub text: String,
    pub updated_at: i64,
}

/// The table of notes.
#[derive(Debug, Clone)]
pub struct Notes {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn key(user_id: &str, note_id: &str) -> Item {
    HashMap::from([
        ("user_id".to_owned(), AttributeValue::S(user_id.to_owned())),
        ("note_id".to_owned(), AttributeValue::S(note_id.to_owned())),
    ])
}

fn note(item: &Item) -> Result<Note, ApiError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = item.get("updated_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
    match (text("user_id"), text("note_id"), text("text"), number) {
        (Some(user_id), Some(note_id), Some(text), Some(updated_at)) => {
            Ok(Note { user_id, note_id, text, updated_at })
        }
        _ => Err(ApiError::internal("a note item lacks an attribute")),
    }
}

impl Notes {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub async fn get(&self, user_id: &str, note_id: &str) -> Result<Option<Note>, ApiError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(user_id, note_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(ApiError::unavailable)?;
        out.item().map(note).transpose()
    }

    /// The user's first [`LIST_LIMIT`] notes, by note id.
    pub async fn list(&self, user_id: &str) -> Result<Vec<Note>, ApiError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", AttributeValue::S(user_id.to_owned()))
            .limit(LIST_LIMIT)
            .send()
            .await
            .map_err(ApiError::unavailable)?;
        out.items().iter().map(note).collect()
    }

    pub async fn put(&self, note: &Note) -> Result<(), ApiError> {
        let mut item = key(&note.user_id, &note.note_id);
        item.insert("text".into(), AttributeValue::S(note.text.clone()));
        item.insert("updated_at".into(), AttributeValue::N(note.updated_at.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(ApiError::unavailable)?;
        Ok(())
    }

    /// True when a note was there to delete.
    pub async fn delete(&self, user_id: &str, note_id: &str) -> Result<bool, ApiError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user_id, note_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(ApiError::unavailable)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}

/// Creates the table as `template.yaml` declares it (for tests and local runs
/// against an emulator; a deployment's table comes from the template).
pub async fn create_table(client: &Client, table: &str) -> Result<(), aws_sdk_dynamodb::Error> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("user_id")?)
        .attribute_definitions(attribute("note_id")?)
        .key_schema(key("user_id", KeyType::Hash)?)
        .key_schema(key("note_id", KeyType::Range)?)
        .send()
        .await?;
    Ok(())
}

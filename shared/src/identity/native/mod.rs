//! Portcullis' own accounts behind the identity port: users in the user store
//! (email encrypted, looked up by its keyed hash), argon2id passwords, TOTP and
//! recovery codes in the MFA store, our refresh tokens in the session store.

mod second_factor;
mod sessions;
#[cfg(test)]
mod tests;

use super::{
    Account, Answer, Challenge, ChallengeSeed, Enrolment, IdentityError, IdentityProvider, IssuedChallenge,
    Need, Next, PendingFactor, Principal, RenewRefusal, Renewal, SignedIn, Verified,
};
use crate::crypto::{FieldCipher, PasswordHasher};
use crate::domain::{Email, Password, Role, UserId};
use crate::http::{Caller, ClientMeta};
use crate::mfa::ChallengeStore;
use crate::sessions::{SessionPolicy, SessionRecord, SessionStore, TokenHash};
use crate::store::{MfaStore, NewUser, StoreError, UserRecord, UserStore};
use crate::tokens::{TokenIssuer, TokenResponse};
use crate::ApiError;
use async_trait::async_trait;
use lambda_http::Request;
use secrecy::SecretString;
use std::sync::Arc;

/// The native provider: the stores it reads and writes, and the password hasher.
pub struct NativeProvider {
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) mfa: Arc<dyn MfaStore>,
    pub(crate) challenges: Arc<dyn ChallengeStore>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) policy: SessionPolicy,
    pub(crate) hasher: PasswordHasher,
}

/// The stores the native provider reads and writes.
#[derive(Clone)]
pub struct NativeStores {
    pub users: Arc<dyn UserStore>,
    pub mfa: Arc<dyn MfaStore>,
    pub challenges: Arc<dyn ChallengeStore>,
    pub sessions: Arc<dyn SessionStore>,
}

impl NativeProvider {
    /// The native provider over `stores`, starting sessions under `policy` and
    /// hashing with `hasher`.
    pub fn new(stores: NativeStores, policy: SessionPolicy, hasher: PasswordHasher) -> Self {
        let NativeStores { users, mfa, challenges, sessions } = stores;
        Self { users, mfa, challenges, sessions, policy, hasher }
    }

    fn email_of(&self, fields: &FieldCipher, id: UserId, ciphertext: &[u8]) -> Result<Email, ApiError> {
        let plain = fields.decrypt(ciphertext, &id.as_bytes()).map_err(ApiError::internal)?;
        let text = String::from_utf8(plain).map_err(ApiError::internal)?;
        Email::parse(&text).map_err(|_| ApiError::internal(StoreError::Corrupt("users.email_ciphertext")))
    }

    /// The caller's record, password hash included (read with [`Need::Password`]).
    fn user_of(principal: &Principal) -> Result<&UserRecord, IdentityError> {
        let missing = || ApiError::internal(std::io::Error::other("principal read without its password"));
        principal.user.as_ref().ok_or_else(|| IdentityError::Api(missing()))
    }

    fn id_of(principal: &Principal) -> Result<UserId, IdentityError> {
        principal.user_id.ok_or(IdentityError::Api(ApiError::Unauthenticated))
    }
}

#[async_trait]
impl IdentityProvider for NativeProvider {
    async fn register(
        &self,
        fields: &FieldCipher,
        email: &Email,
        password: &Password,
        roles: Vec<Role>,
        now: i64,
    ) -> Result<String, IdentityError> {
        let id = UserId::generate();
        let password_hash = self.hasher.hash(password).await.map_err(ApiError::internal)?;
        let user = NewUser {
            id,
            email_index: fields.blind_index(email.as_str()),
            email_ciphertext: fields.encrypt(email.as_str().as_bytes(), &id.as_bytes()),
            password_hash,
            roles,
            created_at: now,
        };
        match self.users.insert_user(&user).await {
            Ok(()) => Ok(id.to_string()),
            Err(StoreError::Duplicate) => Err(IdentityError::Exists),
            Err(other) => Err(other.into()),
        }
    }

    /// An existing account is counted under its id (its MFA failures count
    /// there too); an unknown one under its keyed email hash, so it locks the same way.
    async fn locate(&self, fields: &FieldCipher, typed: &str) -> Result<Account, ApiError> {
        let (email, index) = super::typed_email(fields, typed);
        let user = match &email {
            Some(_) => self.users.find_by_email_index(&index).await?,
            None => None,
        };
        Ok(Account {
            key: user.as_ref().map(|u| u.id.to_string()).unwrap_or_else(|| hex::encode(index)),
            binding: user
                .as_ref()
                .map(|u| crate::device::password_binding(&u.password_hash))
                .unwrap_or_default(),
            subject: user.as_ref().map(|u| u.id.to_string()),
            refusal: if user.is_some() { "wrong_password" } else { "unknown_account" },
            email,
            user,
        })
    }

    /// Wrong password, unknown account and malformed email all take one argon2
    /// verification (ASVS V2.2, enumeration defence).
    async fn check_password(
        &self,
        account: Account,
        password: &Password,
        now: i64,
    ) -> Result<Verified, IdentityError> {
        let verified = match &account.user {
            Some(u) => self.hasher.verify(password, &u.password_hash).await,
            None => self.hasher.verify_dummy(password).await,
        }
        .map_err(ApiError::internal)?;
        let user = match (account.user, verified) {
            (Some(user), true) => user,
            _ => return Err(IdentityError::Refused),
        };
        let mut binding = account.binding;
        if self.hasher.needs_rehash(&user.password_hash) {
            let phc = self.hasher.hash(password).await.map_err(ApiError::internal)?;
            self.users.set_password_hash(user.id, &phc, now).await?;
            binding = crate::device::password_binding(&phc);
        }
        let next = if user.mfa_enabled {
            Next::SecondFactor(PendingFactor {
                user_id: Some(user.id.to_string()),
                email: None,
                pool_session: None,
            })
        } else {
            Next::SignedIn(SignedIn { user_id: user.id.to_string(), amr: vec!["pwd".into()], pool: None })
        };
        Ok(Verified { binding, next })
    }

    async fn challenge(
        &self,
        fields: &FieldCipher,
        pending: PendingFactor,
        seed: ChallengeSeed,
        now: i64,
    ) -> Result<IssuedChallenge, ApiError> {
        self.issue_challenge(fields, pending, seed, now).await
    }

    async fn open_challenge(
        &self,
        fields: &FieldCipher,
        mfa_token: &SecretString,
        now: i64,
    ) -> Result<Option<Challenge>, ApiError> {
        self.find_challenge(mfa_token, now, fields).await
    }

    async fn answer(
        &self,
        fields: &FieldCipher,
        challenge: &Challenge,
        answer: Answer<'_>,
        now: i64,
    ) -> Result<SignedIn, IdentityError> {
        self.answer_challenge(fields, challenge, answer, now).await
    }

    async fn start_session(
        &self,
        issuer: &TokenIssuer,
        signed_in: SignedIn,
        meta: &ClientMeta,
        now: i64,
    ) -> Result<(String, TokenResponse), ApiError> {
        self.start(issuer, signed_in, meta, now).await
    }

    async fn principal(
        &self,
        fields: &FieldCipher,
        req: &Request,
        need: Need,
    ) -> Result<Principal, ApiError> {
        let caller = Caller::from_request(req)?;
        let id = UserId::parse(&caller.sub).ok_or(ApiError::Unauthenticated)?;
        // A token for a deleted user authenticates nobody.
        let (email_ciphertext, mfa_enabled, user) = match need {
            Need::Password => {
                let user = self.users.find_by_id(id).await?.ok_or(ApiError::Unauthenticated)?;
                (user.email_ciphertext.clone(), user.mfa_enabled, Some(user))
            }
            Need::Profile => {
                let state = self.mfa.mfa_state(id).await?.ok_or(ApiError::Unauthenticated)?;
                (state.email_ciphertext, state.mfa_enabled, None)
            }
        };
        Ok(Principal {
            email: self.email_of(fields, id, &email_ciphertext)?,
            mfa_enabled,
            account_key: id.to_string(),
            binding: user
                .as_ref()
                .map(|u| crate::device::password_binding(&u.password_hash))
                .unwrap_or_default(),
            caller,
            user_id: Some(id),
            user,
            pool_access: None,
        })
    }

    async fn roles(&self, principal: &Principal) -> Result<Vec<String>, ApiError> {
        let id = Self::id_of(principal).map_err(|e| super::api_error(e, ApiError::Unauthenticated))?;
        Ok(crate::sessions::role_names(self.users.as_ref(), id).await?)
    }

    async fn change_password(
        &self,
        principal: &Principal,
        current: &Password,
        new: &Password,
        now: i64,
    ) -> Result<(), IdentityError> {
        let user = Self::user_of(principal)?;
        if !self.hasher.verify(current, &user.password_hash).await.map_err(ApiError::internal)? {
            return Err(IdentityError::Refused);
        }
        let phc = self.hasher.hash(new).await.map_err(ApiError::internal)?;
        Ok(self.users.set_password_hash(user.id, &phc, now).await?)
    }

    async fn reauthenticate(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        password: &Password,
        code: Option<&SecretString>,
        now: i64,
    ) -> Result<SignedIn, IdentityError> {
        let user = Self::user_of(principal)?;
        if !self.hasher.verify(password, &user.password_hash).await.map_err(ApiError::internal)? {
            return Err(IdentityError::Refused);
        }
        let mut amr = vec!["pwd".to_owned()];
        if user.mfa_enabled {
            self.check_code(fields, user.id, code, now).await?;
            amr.push("otp".to_owned());
        }
        Ok(SignedIn { user_id: user.id.to_string(), amr, pool: None })
    }

    async fn resume_session(
        &self,
        issuer: &TokenIssuer,
        principal: &Principal,
        signed_in: SignedIn,
        _meta: &ClientMeta,
        now: i64,
    ) -> Result<TokenResponse, ApiError> {
        self.resume(issuer, principal, signed_in, now).await
    }

    fn refresh_hash(&self, presented: &SecretString) -> Option<TokenHash> {
        crate::sessions::hash_presented(presented)
    }

    async fn renew(
        &self,
        session: &SessionRecord,
        _presented: &SecretString,
    ) -> Result<Renewal, RenewRefusal> {
        self.renewal(session).await
    }

    async fn access_token(
        &self,
        issuer: &TokenIssuer,
        session: &SessionRecord,
        renewal: Renewal,
    ) -> Result<String, ApiError> {
        let grant = crate::tokens::Grant::for_session(session, renewal.roles);
        Ok(issuer.issue(grant).map_err(ApiError::internal)?.0)
    }

    /// Our session records are all there is: the caller revokes them.
    async fn sign_out_everywhere(&self, _req: &Request) {}

    async fn begin_totp(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        now: i64,
    ) -> Result<Enrolment, IdentityError> {
        self.enrol(fields, Self::id_of(principal)?, &principal.email, now).await
    }

    async fn confirm_totp(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        code: &SecretString,
        now: i64,
    ) -> Result<Vec<String>, IdentityError> {
        self.confirm(fields, Self::id_of(principal)?, code, now).await
    }

    async fn remove_totp(
        &self,
        fields: &FieldCipher,
        principal: &Principal,
        code: &SecretString,
        now: i64,
    ) -> Result<(), IdentityError> {
        let id = Self::id_of(principal)?;
        self.check_code(fields, id, Some(code), now).await?;
        Ok(self.mfa.disable(id, now).await?)
    }
}

//! The native second factor: stored login challenges (five attempts, then
//! burned), TOTP codes accepted once (RFC 6238 §5.2), single-use recovery
//! codes, and TOTP enrolment.

use super::NativeProvider;
use crate::crypto::FieldCipher;
use crate::domain::{Email, UserId};
use crate::identity::{
    Answer, Challenge, ChallengeHandle, ChallengeSeed, Enrolment, IdentityError, IssuedChallenge,
    PendingFactor, SignedIn,
};
use crate::mfa::{self, TotpCheck};
use crate::ApiError;
use secrecy::{ExposeSecret, SecretString};

impl NativeProvider {
    pub(super) async fn issue_challenge(
        &self,
        fields: &FieldCipher,
        pending: PendingFactor,
        seed: ChallengeSeed,
        now: i64,
    ) -> Result<IssuedChallenge, ApiError> {
        let user_id =
            pending.user_id.ok_or_else(|| ApiError::internal(std::io::Error::other("no account")))?;
        let (mfa_token, hash) = mfa::new_mfa_token();
        let challenge = mfa::Challenge {
            user_id,
            attempts: 0,
            expires_at: now + mfa::CHALLENGE_TTL_SECS,
            throttle_key: Some(seed.bucket),
            device_token: Some(crate::device::seal_for_challenge(fields, &seed.device_token)),
        };
        self.challenges.create(&hash, &challenge).await?;
        Ok(IssuedChallenge { mfa_token: mfa::reveal(&mfa_token), methods: &["totp", "recovery_code"] })
    }

    pub(super) async fn find_challenge(
        &self,
        token: &SecretString,
        now: i64,
        fields: &FieldCipher,
    ) -> Result<Option<Challenge>, ApiError> {
        let Some(hash) = mfa::hash_mfa_token(token.expose_secret()) else {
            return Ok(None);
        };
        let Some(stored) = self.challenges.get(&hash, now).await? else {
            return Ok(None);
        };
        let Some(user_id) = UserId::parse(&stored.user_id) else {
            return Ok(None);
        };
        Ok(Some(Challenge {
            bucket: stored.throttle_key.unwrap_or_else(|| user_id.to_string()),
            subject: Some(user_id.to_string()),
            device_token: stored
                .device_token
                .and_then(|sealed| crate::device::open_from_challenge(fields, &sealed)),
            inner: ChallengeHandle::Stored { hash, user_id },
        }))
    }

    /// A wrong answer counts against the challenge (burned at the fifth); a
    /// right one consumes it, once.
    pub(super) async fn answer_challenge(
        &self,
        fields: &FieldCipher,
        challenge: &Challenge,
        answer: Answer<'_>,
        now: i64,
    ) -> Result<SignedIn, IdentityError> {
        let ChallengeHandle::Stored { hash, user_id } = &challenge.inner else {
            return Err(IdentityError::WrongCode);
        };
        let (checked, amr) = match answer {
            Answer::Totp(code) => (self.check_code(fields, *user_id, Some(code), now).await, "otp"),
            Answer::RecoveryCode(code) => {
                let used = match mfa::hash_recovery_code(code.expose_secret()) {
                    Some(code) => self.mfa.use_recovery_code(*user_id, &code, now).await?,
                    None => false,
                };
                (if used { Ok(()) } else { Err(IdentityError::WrongCode) }, "mfa")
            }
        };
        if let Err(err) = checked {
            if !matches!(err, IdentityError::WrongCode | IdentityError::Replayed) {
                return Err(err);
            }
            let left = self.challenges.fail(hash, now).await?;
            return Err(if left == 0 { IdentityError::Burned } else { err });
        }
        if !self.challenges.consume(hash, now).await? {
            return Err(IdentityError::WrongCode);
        }
        Ok(SignedIn { user_id: user_id.to_string(), amr: vec!["pwd".into(), amr.into()], pool: None })
    }

    /// The account's current TOTP code, accepted once; every route that takes
    /// one (the MFA step, removing TOTP, re-authentication) checks it here.
    pub(super) async fn check_code(
        &self,
        fields: &FieldCipher,
        id: UserId,
        code: Option<&SecretString>,
        now: i64,
    ) -> Result<(), IdentityError> {
        let state = self.mfa.mfa_state(id).await?.ok_or(IdentityError::WrongCode)?;
        let (Some(sealed), Some(code)) = (state.secret.as_deref(), code) else {
            return Err(IdentityError::WrongCode);
        };
        match mfa::check_totp(self.mfa.as_ref(), fields, id, sealed, code.expose_secret(), now).await? {
            TotpCheck::Accepted => Ok(()),
            TotpCheck::Wrong => Err(IdentityError::WrongCode),
            TotpCheck::Replayed => Err(IdentityError::Replayed),
        }
    }

    pub(super) async fn enrol(
        &self,
        fields: &FieldCipher,
        id: UserId,
        email: &Email,
        now: i64,
    ) -> Result<Enrolment, IdentityError> {
        let secret = mfa::new_totp_secret();
        let (secret_b32, otpauth_uri, qr_svg) = mfa::enrolment(&secret, email.as_str())
            .ok_or_else(|| ApiError::internal(std::io::Error::other("TOTP enrolment")))?;
        self.mfa.set_pending(id, &fields.encrypt(&secret, &mfa::secret_aad(id)), now).await?;
        Ok(Enrolment { secret: secret_b32, otpauth_uri, qr_svg })
    }

    /// The pending secret's first code activates it, with fresh recovery codes.
    pub(super) async fn confirm(
        &self,
        fields: &FieldCipher,
        id: UserId,
        code: &SecretString,
        now: i64,
    ) -> Result<Vec<String>, IdentityError> {
        let state = self.mfa.mfa_state(id).await?.ok_or(IdentityError::Api(ApiError::Unauthenticated))?;
        let pending = state.pending.as_deref().ok_or(IdentityError::Conflict)?;
        // A pending secret that does not open fails closed, as a wrong code.
        let secret = mfa::open_secret(fields, id, pending).ok_or(IdentityError::WrongCode)?;
        let step = mfa::matching_step(&secret, code.expose_secret(), now).ok_or(IdentityError::WrongCode)?;
        let codes = mfa::new_recovery_codes();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|(_, h)| *h).collect();
        if !self.mfa.activate(id, step as i64, &hashes, now).await? {
            return Err(IdentityError::Conflict);
        }
        Ok(codes.iter().map(|(c, _)| mfa::reveal(c)).collect())
    }
}

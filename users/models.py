"""Users: email is the login; settings live on the user row."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import (
    AbstractBaseUser,
    BaseUserManager,
    PermissionsMixin,
)
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    """Every way in (signup, createsuperuser, the admin, login) agrees on one
    spelling of an email: the one normalize_email gives."""

    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        return normalize_email(email or "")

    def get_by_natural_key(self, username: str | None) -> User:
        # Login (ModelBackend) and createsuperuser's "already taken" check look
        # users up here: by the stored spelling, which uses the unique index.
        return self.get(email=normalize_email(username or ""))

    def create_user(
        self, email: str, password: str | None = None, **extra: Any
    ) -> User:
        """Create a user with a normalized, lower-cased email and a hashed password."""
        if not email:
            raise ValueError("email is required")
        user = self.model(email=normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(
        self, email: str, password: str | None = None, **extra: Any
    ) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


def normalize_email(email: str) -> str:
    return email.strip().lower()


class User(AbstractBaseUser, PermissionsMixin):
    """A person using Kimberly; owns every memory, token and audit event of theirs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    embedding_enabled = models.BooleanField(default=True)
    consent_telemetry = models.BooleanField(default=False)
    # Memories Kimberly proposes from chat are stored without asking (off: the
    # user accepts or rejects each one).
    memory_auto_accept = models.BooleanField(default=False)
    # Meditation weights (normalized, summing to 1); empty = the system default.
    meditation_weights = models.JSONField(null=True, blank=True)
    # IANA name; the reminder agent reads "tomorrow at 9" in it.
    time_zone = models.CharField(max_length=64, default="UTC")
    # Where the agents POST signed events (reminders); blank: nowhere.
    webhook_url = models.CharField(max_length=2000, blank=True, default="")
    # The HMAC key of those events: made when a URL is set (and on request), shown
    # to the user once, in that answer; cleared with the URL. Kept in clear
    # because signing needs it.
    webhook_secret = models.CharField(
        max_length=64, blank=True, default="", editable=False
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="users_user_email_ci_unique"),
        ]

    def clean(self) -> None:
        # Model forms (the admin's add and change forms) call this before
        # validating uniqueness and saving, so they store the normalized email.
        super().clean()
        self.email = normalize_email(self.email)

    def __str__(self) -> str:
        return self.email


class Consent(models.Model):
    """One grant of consent for one purpose, and its withdrawal (the ledger: a
    new grant after a withdrawal is a new row, so the history stays)."""

    class Purpose(models.TextChoices):
        SENSITIVE_MEMORY = "sensitive_memory"  # keep sensitive items at all
        MODEL_CONTEXT = "model_context"  # send sensitive items to a model runner
        AGENT_ACCESS = "agent_access"  # let agents read sensitive items
        TELEMETRY = "telemetry"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="consents")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    granted_at = models.DateTimeField(default=timezone.now)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, help_text="api, settings, admin, ...")
    withdrawn_source = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            # At most one standing grant per purpose.
            models.UniqueConstraint(
                fields=["user", "purpose"],
                condition=models.Q(withdrawn_at__isnull=True),
                name="users_consent_one_standing",
            )
        ]
        indexes = [
            models.Index(
                fields=["user", "purpose", "-granted_at"], name="users_consent_when"
            )
        ]

    def __str__(self) -> str:
        state = "withdrawn" if self.withdrawn_at else "granted"
        return f"{self.user_id} {self.purpose} {state}"


class DataKey(models.Model):
    """A user's data key (AES-256), kept only wrapped by a key-encryption key of
    the KMS (users/keys.py). Ciphertext names the version it was sealed with;
    destroying the key (erasure) makes every copy of that ciphertext, backups
    included, unreadable."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="data_keys")
    version = models.PositiveIntegerField()
    wrapped = models.BinaryField()
    kek_id = models.CharField(max_length=255, help_text="provider:key that wraps it")
    created_at = models.DateTimeField(default=timezone.now)
    rewrapped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "version"], name="users_datakey_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} v{self.version} ({self.kek_id})"

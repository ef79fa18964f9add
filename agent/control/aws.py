"""The boto3 IoT client, our retry policy, and one-line messages for every failure.

boto3 and botocore are imported inside functions only: the agent service never
loads them, and ``defender-agent --help`` stays fast without the ``bootstrap`` extra.

botocore's own retries are switched off (``total_max_attempts=1``) so that one
policy, :class:`RetryPolicy`, decides: ThrottlingException, InternalFailureException
and HTTP 5xx are retried with exponential backoff and full jitter; everything
else surfaces at once as a :class:`ControlPlaneError` or a per-metric failure.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, TypeVar

from agent.errors import ControlPlaneError, DetectUnavailable

log = logging.getLogger("agent.control.aws")

T = TypeVar("T")

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "InternalFailureException",
        "ServiceUnavailableException",
        "RequestLimitExceeded",
    }
)

CREDENTIALS_HELP = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or AWS_PROFILE / --profile, or run where an instance or task role is available"
)
REGION_HELP = (
    "no AWS region set: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or set one in the profile"
)


@dataclass(frozen=True)
class AwsSettings:
    """The usual AWS settings; ``None`` means "as boto3 finds it" (environment, ~/.aws)."""

    profile: Optional[str] = None
    region: Optional[str] = None
    endpoint_url: Optional[str] = None


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    attempts: int = 6
    base: float = 0.25
    cap: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap, self.base * (2**attempt)))


def quiet_sdk_logging() -> None:
    """Keep botocore's INFO lines ("Found credentials in environment variables") out of command output."""
    for name in ("boto3", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_client(settings: AwsSettings) -> Any:
    """A boto3 ``iot`` client, or ControlPlaneError naming what is missing (profile, region, credentials)."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound
    except ImportError:
        raise ControlPlaneError(
            "boto3 is not installed; install the control-plane extra: pip install 'defender-agent[bootstrap]'"
        ) from None
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        if session.region_name is None and os.environ.get("AWS_REGION"):
            # botocore reads only AWS_DEFAULT_REGION; the AWS CLI v2 and other SDKs read AWS_REGION.
            region = os.environ["AWS_REGION"]
            session = boto3.session.Session(profile_name=settings.profile, region_name=region)
        if session.get_credentials() is None:
            raise ControlPlaneError(CREDENTIALS_HELP)
        config = Config(
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="defender-agent",
        )
        return session.client("iot", endpoint_url=settings.endpoint_url, config=config)
    except ProfileNotFound:
        raise ControlPlaneError(
            f"AWS profile {settings.profile!r} is not in ~/.aws/config or ~/.aws/credentials"
        ) from None
    except NoRegionError:
        raise ControlPlaneError(REGION_HELP) from None
    except ValueError as exc:  # e.g. a malformed --endpoint-url
        raise ControlPlaneError(f"cannot create the AWS IoT client: {exc}") from None
    except BotoCoreError as exc:
        raise ControlPlaneError(f"cannot create the AWS IoT client: {exc}") from None


def error_code(exc: BaseException) -> Optional[str]:
    """The modelled error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def is_retryable(exc: BaseException) -> bool:
    code = error_code(exc)
    if code is None:
        return False
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in RETRYABLE_CODES or (isinstance(status, int) and status >= 500)


def call(fn: Callable[..., T], what: str, policy: RetryPolicy, **kwargs: Any) -> T:
    """``fn(**kwargs)`` with retries on throttling and internal failures.

    Raises the last ClientError when it is not retryable or retries ran out;
    transport and credential failures become ControlPlaneError at once.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    attempt = 0
    while True:
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if detect_closed(exc):
                raise detect_unavailable(exc) from None
            attempt += 1
            if not is_retryable(exc) or attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt - 1)
            log.warning(
                "%s: %s, retrying in %.2fs (attempt %d of %d)",
                what,
                error_code(exc),
                wait,
                attempt + 1,
                policy.attempts,
            )
            policy.sleep(wait)
        except BotoCoreError as exc:
            raise ControlPlaneError(transport_message(exc)) from None


def transport_message(exc: BaseException) -> str:
    """One line for a botocore error that is not a service response."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return CREDENTIALS_HELP if name == "NoCredentialsError" else f"AWS credentials are incomplete: {exc}"
    if name == "NoRegionError":
        return REGION_HELP
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ReadTimeoutError",
    ):
        return f"cannot reach AWS IoT: {exc}"
    if name == "ParamValidationError":
        return f"invalid request parameters: {' '.join(str(exc).split())}"
    return f"AWS IoT call failed: {name}: {exc}"


# Since 2026-08-31 AWS answers every Detect API of an account that never used Detect with HTTP 401,
# UnauthorizedException, "This feature is no longer available to new customers. For more information, see
# https://docs.aws.amazon.com/iot-device-defender/latest/devguide/dd-detect-availability-change.html"
# (../shared/SPEC.md, "Control plane"). That is no missing permission: no policy change helps.
DETECT_CLOSED_MARK = "no longer available to new customers"
WITHOUT_DETECT_PAGE = "docs/WITHOUT-DETECT.md"

_MEANINGS = {
    "InvalidRequestException": "the service refused the request as invalid",
    "LimitExceededException": "an account limit is reached (custom metrics per account and region); "
    "delete unused metrics (bootstrap --prune) or ask AWS for a higher quota",
    "ResourceAlreadyExistsException": "it already exists with a different definition or client request token",
    "ThrottlingException": "AWS IoT kept throttling the request after every retry; try again later",
    "InternalFailureException": "AWS IoT reported an internal failure on every retry; try again later",
    "ResourceNotFoundException": "it does not exist",
    "UnrecognizedClientException": "the access key is not known to AWS; check the credentials",
    "InvalidSignatureException": "the request signature was refused; check the secret key and the clock",
    "AccessDeniedException": "access denied; the IAM identity lacks the {action} permission",
    "UnauthorizedException": "not authorized; check that the IAM identity may call {action}",
    "ExpiredTokenException": "the session token has expired; refresh the credentials",
}


def action_of(exc: BaseException) -> str:
    """The IAM action of the call that failed (``iot:CreateCustomMetric``), from botocore's operation name."""
    operation = getattr(exc, "operation_name", None)
    return f"iot:{operation}" if operation else "the iot: action of this call"


def detect_closed(exc: BaseException) -> bool:
    """True when AWS refused the call because the account cannot use Device Defender Detect."""
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message") or "")
    return error_code(exc) == "UnauthorizedException" and DETECT_CLOSED_MARK in message.lower()


def detect_unavailable(exc: BaseException) -> DetectUnavailable:
    """One line for an account without Detect: what it cannot do here, what works instead, AWS's own words."""
    operation = str(getattr(exc, "operation_name", "") or "")
    if "MetricValues" in operation:
        cannot = "this AWS account has no Device Defender Detect to read metric values from"
    elif "SecurityProfile" in operation:
        cannot = "this AWS account has no Device Defender Detect security profiles to pull"
    else:
        cannot = "this AWS account cannot register Device Defender Detect custom metrics"
    message = " ".join(str(getattr(exc, "response", {}).get("Error", {}).get("Message") or "").split())
    return DetectUnavailable(
        f"{cannot}: AWS closed Detect to new customers on 2026-08-31 and no permission changes that. "
        f"Without Detect, the topic and textfile sinks and on-device behaviors work, and a config without a "
        f"defender sink needs no bootstrap ({WITHOUT_DETECT_PAGE}). AWS said: UnauthorizedException: {message}"
    )


def client_error_message(exc: BaseException, what: str) -> str:
    """One line a person understands, e.g. ``create cpu_usage: an account limit is reached ... (message)``."""
    code = error_code(exc) or type(exc).__name__
    message = getattr(exc, "response", {}).get("Error", {}).get("Message") or ""
    meaning = _MEANINGS.get(code)
    detail = " ".join(str(message).split())
    if meaning is None:
        return f"{what}: {code}: {detail}" if detail else f"{what}: {code}"
    meaning = meaning.format(action=action_of(exc))
    return f"{what}: {meaning} ({code}: {detail})" if detail else f"{what}: {meaning} ({code})"


def paginate(client: Any, operation: str, result_key: str, params: Mapping[str, Any], what: str,
             policy: RetryPolicy, page_size: Optional[int] = None, limit: Optional[int] = None) -> List[Any]:
    """Every item under ``result_key`` of ``operation``'s pages (boto3's paginator), in the service's order.

    A throttled or failing page is fetched again from the last good page's token, after the policy's
    backoff, up to ``policy.attempts`` failures in a row; then, or on an error that no retry helps, it
    raises :class:`ControlPlaneError` naming ``what``. ``limit`` stops after that many items (at least).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    paginator = client.get_paginator(operation)
    out: List[Any] = []
    token: Optional[str] = None
    failures = 0
    while True:
        config: Dict[str, Any] = {}
        if token:
            config["StartingToken"] = token
        if page_size:
            config["PageSize"] = page_size
        try:
            for page in paginator.paginate(**params, PaginationConfig=config):
                out.extend(page.get(result_key, []))
                token = page.get("nextToken")
                failures = 0
                if limit is not None and len(out) >= limit:
                    break
            return out
        except ClientError as exc:
            if detect_closed(exc):
                raise detect_unavailable(exc) from None
            failures += 1
            if not is_retryable(exc) or failures >= policy.attempts:
                raise ControlPlaneError(client_error_message(exc, what)) from None
            wait = policy.delay(failures - 1)
            log.warning("%s: %s, resuming in %.2fs", operation, error_code(exc) or exc, wait)
            policy.sleep(wait)
        except BotoCoreError as exc:
            raise ControlPlaneError(transport_message(exc)) from None

"""What the log filter masks: Socket Mode URLs, Slack tokens, given secrets, in messages and
tracebacks; what it leaves alone."""

from __future__ import annotations

import io
import logging

import pytest

from meshagent.slack.redact import REDACT, Redactor, guard_handlers, guarded

URL = "wss://wss-primary.slack.com/link/?ticket=2f1c0e9a-77b3&app_id=A0MESH"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"url='{URL}'", "url='wss://wss-primary.slack.com/link/?***'"),
        (f"{{'ok': True, 'url': '{URL}'}}", "{'ok': True, 'url': 'wss://wss-primary.slack.com/link/?***'}"),
        (
            '{"url":"wss:\\/\\/wss-primary.slack.com\\/link\\/?ticket=abc&app_id=A0"}',
            '{"url":"wss:\\/\\/wss-primary.slack.com\\/link\\/?***"}',
        ),
        ("token xoxb-1234-5678-AbCd given", "token xoxb-*** given"),
        ("xapp-1-A0MESH-1-deadbeef and xoxe.xoxp-1-abc", "xapp-*** and xoxe.xoxp-***"),
        ("proxy http://me:hunter22@proxy.internal:3128", "proxy http://me:***@proxy.internal:3128"),
    ],
)  # fmt: skip
def test_masks_urls_and_tokens_by_shape(text, masked):
    assert Redactor().mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "set SLACK_APP_TOKEN to the app-level token (xapp-...), not a bot token (xoxb-...)",
        "POST https://slack.com/api/chat.postMessage?channel=C0 and ws://127.0.0.1:80/link/",
        "jira ticket=PAY-12 updated",
    ],
)
def test_leaves_what_is_no_secret(text):
    assert Redactor().mask(text) == text


def test_masks_given_secrets_but_not_short_ones():
    redactor = Redactor()
    redactor.add("0123456789abcdef-signing", "", "short")
    assert redactor.mask("v0=0123456789abcdef-signing short") == "v0=*** short"


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("x", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_a_record_is_masked_in_its_message_and_traceback_and_still_formats():
    try:
        raise ValueError(f"401, message='Invalid response status', url='{URL}'")
    except ValueError as exc:
        record = _record("Failed to connect (error: %s); Retrying...", exc, exc=exc)
    assert REDACT.filter(record) is True
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert "ticket" not in text and "2f1c0e9a" not in text
    assert text.startswith("ERROR Failed to connect (error: 401, message='Invalid response")
    assert "url='wss://wss-primary.slack.com/link/?***'); Retrying..." in text
    assert "Traceback (most recent call last)" in text  # the traceback is kept, masked
    assert record.exc_info is None  # the exception itself holds the URL


def test_a_record_without_secrets_is_left_as_it_was():
    record = _record("ran %s in %d ms", "ask", 12)
    REDACT.filter(record)
    assert (record.msg, record.args) == ("ran %s in %d ms", ("ask", 12))


def test_arguments_that_do_not_fit_are_kept_masked():
    record = _record("%s and %s", "xoxb-1-2-3")
    assert REDACT.filter(record) is True
    assert record.getMessage() == "%s and %s ('xoxb-***',)"


def test_a_guarded_logger_masks_for_every_handler(caplog):
    caplog.set_level(logging.DEBUG, logger="meshagent.test.redact")
    guarded("meshagent.test.redact").debug("body: {'url': '%s'}", URL)
    [record] = caplog.records
    assert record.getMessage() == "body: {'url': 'wss://wss-primary.slack.com/link/?***'}"
    assert "ticket" not in caplog.text


def test_serve_puts_the_filter_on_the_handlers_of_any_logger():
    """Records of loggers the Slack app does not hand out (asyncio's, uvicorn's) are masked by
    the handlers serve configured."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("meshagent.test.elsewhere")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        guard_handlers()
        logger.warning("Task exception was never retrieved: url=%s", URL)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert out.getvalue() == (
        "Task exception was never retrieved: url=wss://wss-primary.slack.com/link/?***\n"
    )


def test_the_environments_other_secrets_are_masked_too():
    redactor = Redactor()
    env = {
        "JIRA_API_TOKEN": "ATATT3xFfGF0-jira-cloud-token",
        "OPENAI_API_KEY": "sk-proj-0123456789abcdef",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
        "JIRA_URL": "https://jira.example.com",  # not a secret: stays
        "JIRA_TOKEN": "short",  # too short to mask by value: could be any word
        "ACME_JIRA_PAT": "pat-renamed-in-meshagent-toml",  # [jira] token_env = "ACME_JIRA_PAT"
    }
    redactor.add_environment(env, ["ACME_JIRA_PAT"])
    line = (
        "jira said 401 for ATATT3xFfGF0-jira-cloud-token at https://jira.example.com; "
        "openai key sk-proj-0123456789abcdef; aws wJalrXUtnFEMI/K7MDENG/bPxRfiCY; short; "
        "pat pat-renamed-in-meshagent-toml"
    )
    assert redactor.mask(line) == (
        "jira said 401 for *** at https://jira.example.com; openai key ***; aws ***; short; pat ***"
    )

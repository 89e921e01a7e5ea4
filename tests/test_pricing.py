"""Pricing: exact USD from overrides, builtins and genai-prices' bundled data, each token once."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import timeit
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices.data import providers as genai_providers
from genai_prices.types import ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint

from meshagent.config import PriceOverride
from meshagent.models import pricing
from meshagent.models.pricing import PROVIDER_IDS, Cost, Pricer, Usage, unknown_cost_message
from meshagent.models.providers import PROVIDERS

MTOK = Decimal(1_000_000)
AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# 10k prompt tokens of which 3k cache reads and 2k cache writes; 500 output of which 100 reasoning.
USAGE = Usage(
    input_tokens=10_000,
    cache_read_tokens=3_000,
    cache_write_tokens=2_000,
    output_tokens=500,
    reasoning_tokens=100,
)


def genai_price(provider_id: str, model_ref: str, at: datetime = AT) -> ModelPrice:
    """The per-mtok prices genai-prices itself applies to the model at ``at``."""
    calc = genai_prices.calc_price(
        genai_prices.Usage(), model_ref, provider_id=provider_id, genai_request_timestamp=at
    )
    return calc.model_price


def genai_total(usage: Usage, provider_id: str, model_ref: str, at: datetime = AT) -> Decimal:
    """genai-prices' own total for ``usage``; its input_tokens include cache tokens, like ours."""
    genai_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )
    calc = genai_prices.calc_price(
        genai_usage, model_ref, provider_id=provider_id, genai_request_timestamp=at
    )
    return calc.total_price


def flat(price: Decimal | TieredPrices | None) -> Decimal:
    """The base rate: every usage here stays below the first tier."""
    assert price is not None
    return price.base if isinstance(price, TieredPrices) else price


def conditional_prices(provider_id: str, model_id: str) -> list:
    provider = next(p for p in genai_providers if p.id == provider_id)
    model = next((m for m in provider.models if m.id == model_id), None)
    if model is None or isinstance(model.prices, ModelPrice):
        return []
    return model.prices


def test_known_model_is_priced_exactly_from_genai_prices_numbers():
    rates = genai_price("openai", "gpt-4.1-mini")
    assert rates.cache_write_mtok is None  # OpenAI bills cache writes as input

    cost = Pricer().price("openai:gpt-4.1-mini", USAGE, at=AT)

    assert cost is not None
    assert cost.input_usd == (10_000 - 3_000 - 2_000) * rates.input_mtok / MTOK
    assert cost.cache_usd == (3_000 * rates.cache_read_mtok + 2_000 * rates.input_mtok) / MTOK
    assert cost.output_usd == 500 * rates.output_mtok / MTOK  # reasoning is part of the 500
    assert cost.total_usd == cost.input_usd + cost.cache_usd + cost.output_usd
    assert cost.total_usd == genai_total(USAGE, "openai", "gpt-4.1-mini")
    assert cost.source == "genai-prices"
    assert cost.version == genai_prices.__version__
    assert cost.model_ref == "openai:gpt-4.1-mini"
    for amount in (cost.input_usd, cost.cache_usd, cost.output_usd, cost.total_usd):
        assert type(amount) is Decimal


def test_cached_tokens_are_not_billed_twice():
    rates = genai_price("anthropic", "claude-sonnet-4-5")
    input_rate, output_rate = flat(rates.input_mtok), flat(rates.output_mtok)
    read_rate, write_rate = flat(rates.cache_read_mtok), flat(rates.cache_write_mtok)
    assert read_rate < input_rate < write_rate  # the cache has prices of its own

    cost = Pricer().price("anthropic:claude-sonnet-4-5", USAGE, at=AT)

    # By hand: 5k uncached + 3k read + 2k written make up the 10k prompt, each billed once.
    expected = (
        5_000 * input_rate + 3_000 * read_rate + 2_000 * write_rate + 500 * output_rate
    ) / MTOK
    double_billed = expected + (3_000 + 2_000) * input_rate / MTOK
    assert cost is not None
    assert cost.input_usd == 5_000 * input_rate / MTOK
    assert cost.cache_usd == (3_000 * read_rate + 2_000 * write_rate) / MTOK
    assert cost.total_usd == expected < double_billed
    # genai-prices agrees when given the cache-inclusive input count, so no conversion is needed.
    assert genai_total(USAGE, "anthropic", "claude-sonnet-4-5") == expected


def test_long_prompt_switches_every_rate_to_the_tier():
    rates = genai_price("anthropic", "claude-sonnet-4-5")
    if not isinstance(rates.input_mtok, TieredPrices):
        pytest.skip("claude-sonnet-4-5 has no tiered price in this genai-prices data")
    usage = Usage(input_tokens=300_000, cache_read_tokens=150_000, output_tokens=1_000)
    threshold = rates.input_mtok.tiers[0].start
    assert usage.input_tokens > threshold > usage.uncached_input_tokens  # the cache counts

    cost = Pricer().price("anthropic:claude-sonnet-4-5", usage, at=AT)

    def tier(price: Decimal | TieredPrices) -> Decimal:
        return price.tiers[0].price if isinstance(price, TieredPrices) else price

    assert cost is not None
    assert cost.input_usd == 150_000 * tier(rates.input_mtok) / MTOK
    assert cost.cache_usd == 150_000 * tier(rates.cache_read_mtok) / MTOK
    assert cost.output_usd == 1_000 * tier(rates.output_mtok) / MTOK
    assert cost.total_usd == genai_total(usage, "anthropic", "claude-sonnet-4-5")


def test_override_wins_over_genai_prices():
    override = PriceOverride(
        input_per_mtok=Decimal("1.10"),
        output_per_mtok=Decimal("4.40"),
        cache_read_per_mtok=Decimal("0.275"),
        cache_write_per_mtok=Decimal("1.375"),
    )
    pricer = Pricer({"openai:gpt-4.1-mini": override})

    cost = pricer.price("openai:gpt-4.1-mini", USAGE, at=AT)

    assert cost == Cost(
        input_usd=Decimal("0.0055"),  # 5k x 1.10
        cache_usd=Decimal("0.003575"),  # 3k x 0.275 + 2k x 1.375
        output_usd=Decimal("0.0022"),  # 500 x 4.40
        source="meshagent.toml",
        version="meshagent.toml",
        model_ref="openai:gpt-4.1-mini",
    )
    assert cost.total_usd == Decimal("0.011275")
    # Other models still come from genai-prices.
    assert pricer.price("openai:gpt-4o", USAGE, at=AT).source == "genai-prices"


def test_override_without_cache_prices_bills_cache_at_the_input_rate():
    override = PriceOverride(input_per_mtok=Decimal(2), output_per_mtok=Decimal(8))

    cost = Pricer({"ollama:llama3.1": override}).price("ollama:llama3.1", USAGE)

    assert cost is not None
    assert cost.input_usd == Decimal("0.010")  # 5k uncached x 2
    assert cost.cache_usd == Decimal("0.010")  # 3k + 2k cached x 2
    assert cost.output_usd == Decimal("0.004")  # 500 x 8
    assert cost.total_usd == 10_000 * Decimal(2) / MTOK + 500 * Decimal(8) / MTOK


def test_override_from_meshagent_toml_prices_a_model_genai_prices_lacks():
    snippet = unknown_cost_message("ollama:llama3.1").split("\n", 1)[1]
    table = tomllib.loads(snippet)["prices"]["ollama:llama3.1"]

    cost = Pricer({"ollama:llama3.1": PriceOverride.model_validate(table)}).price(
        "ollama:llama3.1", USAGE
    )

    assert cost is not None
    assert cost.total_usd == 0
    assert cost.source == "meshagent.toml"


@pytest.mark.parametrize(
    "model",
    [
        "ollama:llama3.1",  # local: no public price
        "openai:no-such-model-anywhere",
        "azure_openai:my-deployment-name",
        "madeup:gpt-4o",  # not a LangChain provider
        "gpt-4o",  # no provider
        "openai:text-embedding-3-small",  # no output price, yet output tokens were used
        "openai:moderation",  # in the data without any price
    ],
)
def test_unknown_price_is_none_never_zero(model):
    assert Pricer().price(model, USAGE, at=AT) is None


def test_price_of_input_only_model_with_input_only_usage():
    usage = Usage(input_tokens=1_000)
    rates = genai_price("openai", "text-embedding-3-small")

    cost = Pricer().price("openai:text-embedding-3-small", usage, at=AT)

    assert cost is not None
    assert cost.total_usd == 1_000 * rates.input_mtok / MTOK


def test_unknown_cost_message():
    message = unknown_cost_message("ollama:llama3.1")

    assert message.startswith(
        "cost unknown for ollama:llama3.1: add a price override to meshagent.toml"
    )
    assert '[prices."ollama:llama3.1"]' in message.splitlines()


@pytest.mark.parametrize("model", ["offline", "scripted"])
def test_builtin_models_cost_exactly_zero(model):
    cost = Pricer().price(model, USAGE)

    assert cost == Cost(Decimal(0), Decimal(0), Decimal(0), "builtin", "builtin", model)
    assert type(cost.total_usd) is Decimal
    assert cost.total_usd == 0


def test_price_that_changed_over_time_is_the_one_in_force_at_the_call():
    changes = [
        (provider_id, model_id, index, price.constraint.start_date)
        for provider_id, model_id in [("openai", "o3"), ("mistral", "mistral-medium-latest")]
        for index, price in enumerate(conditional_prices(provider_id, model_id))
        if isinstance(price.constraint, StartDateConstraint)
    ]
    if not changes:
        pytest.skip("no dated price change for o3 or mistral-medium in this genai-prices data")
    provider_id, model_id, index, start = changes[0]
    langchain_name = {"openai": "openai", "mistral": "mistralai"}[provider_id]
    before = datetime.combine(start - timedelta(days=1), time(12), UTC)
    after = datetime.combine(start, time(12), UTC)
    old = conditional_prices(provider_id, model_id)[index - 1].prices
    new = conditional_prices(provider_id, model_id)[index].prices
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    pricer = Pricer()

    cost_before = pricer.price(f"{langchain_name}:{model_id}", usage, at=before)
    cost_after = pricer.price(f"{langchain_name}:{model_id}", usage, at=after)

    assert cost_before.total_usd == flat(old.input_mtok) + flat(old.output_mtok)
    assert cost_after.total_usd == flat(new.input_mtok) + flat(new.output_mtok)
    assert cost_before.total_usd != cost_after.total_usd


def test_off_peak_price_follows_the_time_of_day_in_utc():
    prices = conditional_prices("deepseek", "deepseek-chat")
    peak = next((p for p in prices if isinstance(p.constraint, TimeOfDateConstraint)), None)
    if peak is None:
        pytest.skip("deepseek-chat has no time-of-day price in this genai-prices data")
    off_peak = prices[0].prices
    start = peak.constraint.start_time
    inside = datetime.combine(date(2026, 6, 1), start.replace(tzinfo=None), UTC)
    outside = inside - timedelta(minutes=1)
    usage = Usage(input_tokens=1_000_000)
    pricer = Pricer()

    assert pricer.price("deepseek:deepseek-chat", usage, at=inside).total_usd == flat(
        peak.prices.input_mtok
    )
    assert pricer.price("deepseek:deepseek-chat", usage, at=outside).total_usd == flat(
        off_peak.input_mtok
    )
    # A naive time is taken as UTC.
    naive = inside.replace(tzinfo=None)
    assert pricer.price("deepseek:deepseek-chat", usage, at=naive).total_usd == flat(
        peak.prices.input_mtok
    )


@pytest.mark.parametrize(
    ("model", "provider_id", "model_ref", "entry"),
    [
        (
            "bedrock_converse:anthropic.claude-3-5-sonnet-20240620-v1:0",
            "aws",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "aws:",
        ),
        ("bedrock:us.anthropic.claude-3-5-sonnet-20240620-v1:0", "aws", None, "aws:"),
        ("azure_openai:gpt-4o", "azure", "gpt-4o", "openai:gpt-4o"),
        ("azure_ai:gpt-4o", "azure", "gpt-4o", "openai:gpt-4o"),
        ("google_genai:gemini-2.5-flash", "google", "gemini-2.5-flash", "google:gemini-2.5-flash"),
        ("google_vertexai:gemini-2.5-flash", "google", None, "google:gemini-2.5-flash"),
        ("google_anthropic_vertex:claude-sonnet-4-5@20250929", "google", None, "google:claude"),
        ("mistralai:mistral-large-latest", "mistral", "mistral-large-latest", "mistral:"),
        ("xai:grok-4", "x-ai", "grok-4", "x-ai:grok-4"),
        ("groq:llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile", "groq:"),
        ("deepseek:deepseek-chat", "deepseek", "deepseek-chat", "deepseek:deepseek-chat"),
    ],
)
def test_langchain_provider_names_map_to_genai_prices_providers(
    model, provider_id, model_ref, entry
):
    cost = Pricer().price(model, USAGE, at=AT)

    assert cost is not None, model
    assert cost.model_ref.startswith(entry)
    genai_ref = model_ref or model.partition(":")[2]
    assert cost.total_usd == genai_total(USAGE, provider_id, genai_ref)


def test_every_langchain_provider_has_a_decision():
    genai_ids = {provider.id for provider in genai_providers}

    assert set(PROVIDER_IDS) == set(PROVIDERS)
    for name, provider_id in PROVIDER_IDS.items():
        assert provider_id is None or provider_id in genai_ids | {"litellm"}, name


def test_agrees_with_genai_prices_on_every_bundled_model():
    usages = [USAGE, Usage(input_tokens=300_000, cache_read_tokens=120_000, output_tokens=9)]
    moments = [AT, datetime(2025, 1, 1, 3, 0, tzinfo=UTC), datetime(2026, 12, 31, 20, tzinfo=UTC)]
    checked = 0
    for provider_id in {i for i in PROVIDER_IDS.values() if i and i != "litellm"}:
        langchain_name = next(k for k, v in PROVIDER_IDS.items() if v == provider_id)
        provider = next(p for p in genai_providers if p.id == provider_id)
        for model in provider.models:
            for usage in usages:
                for at in moments:
                    cost = Pricer().price(f"{langchain_name}:{model.id}", usage, at=at)
                    if cost is None:
                        continue
                    assert cost.total_usd == genai_total(usage, provider_id, model.id, at), (
                        f"{langchain_name}:{model.id} at {at}"
                    )
                    checked += 1
    assert checked > 1000


def test_per_request_fee_and_separate_reasoning_rate_match_genai_prices():
    for model_id in ("sonar", "sonar-deep-research"):
        cost = Pricer().price(f"perplexity:{model_id}", USAGE, at=AT)
        if cost is None:
            pytest.skip(f"perplexity {model_id} is not in this genai-prices data")
        assert cost.total_usd == genai_total(USAGE, "perplexity", model_id)


def test_arithmetic_ignores_the_callers_decimal_context():
    usage = Usage(input_tokens=123_456_789, cache_read_tokens=1_234_567, output_tokens=98_765)
    expected = Pricer().price("anthropic:claude-sonnet-4-5", usage, at=AT)

    with localcontext() as ctx:
        ctx.prec = 3
        cost = Pricer().price("anthropic:claude-sonnet-4-5", usage, at=AT)

    assert cost == expected
    assert cost.total_usd == genai_total(usage, "anthropic", "claude-sonnet-4-5")


def test_usage_from_usage_metadata_with_details():
    openai_style = {
        "input_tokens": 1_200,
        "output_tokens": 300,
        "total_tokens": 1_500,
        "input_token_details": {"audio": 0, "cache_read": 1_024},
        "output_token_details": {"audio": 0, "reasoning": 256},
    }
    assert Usage.from_usage_metadata(openai_style) == Usage(
        input_tokens=1_200, cache_read_tokens=1_024, output_tokens=300, reasoning_tokens=256
    )
    anthropic_style = {
        "input_tokens": 2_000,
        "output_tokens": 50,
        "total_tokens": 2_050,
        "input_token_details": {"cache_read": 700, "cache_creation": 900},
    }
    usage = Usage.from_usage_metadata(anthropic_style)
    assert usage == Usage(
        input_tokens=2_000, cache_read_tokens=700, cache_write_tokens=900, output_tokens=50
    )
    assert usage.uncached_input_tokens == 400


def test_usage_from_usage_metadata_with_cache_lifetimes():
    # langchain-anthropic zeroes cache_creation when it splits writes by lifetime.
    split = {
        "input_tokens": 1_000,
        "output_tokens": 10,
        "total_tokens": 1_010,
        "input_token_details": {
            "cache_read": 100,
            "cache_creation": 0,
            "ephemeral_5m_input_tokens": 300,
            "ephemeral_1h_input_tokens": 200,
        },
    }
    assert Usage.from_usage_metadata(split).cache_write_tokens == 500
    # Older versions report the total as well: still 500, not 1000.
    split["input_token_details"]["cache_creation"] = 500
    assert Usage.from_usage_metadata(split).cache_write_tokens == 500


@pytest.mark.parametrize(
    "meta",
    [None, {}, {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}],
)
def test_usage_from_missing_usage_metadata_is_zero(meta):
    assert Usage.from_usage_metadata(meta) == Usage()


def test_usage_from_usage_metadata_with_null_details():
    meta = {
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "input_token_details": {"cache_read": None},
        "output_token_details": None,
    }
    assert Usage.from_usage_metadata(meta) == Usage(input_tokens=10, output_tokens=5)


def test_usage_addition():
    first = Usage(input_tokens=100, cache_read_tokens=40, output_tokens=20, reasoning_tokens=5)
    second = Usage(input_tokens=50, cache_write_tokens=30, output_tokens=10)

    total = first + second

    assert total == Usage(
        input_tokens=150,
        cache_read_tokens=40,
        cache_write_tokens=30,
        output_tokens=30,
        reasoning_tokens=5,
    )
    assert total.uncached_input_tokens == 80
    assert sum([first, second], Usage()) == total
    with pytest.raises(TypeError):
        first + 1  # noqa: B018


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"input_tokens": -1}, "input_tokens must be a whole number"),
        ({"output_tokens": 1.5}, "output_tokens must be a whole number"),
        ({"input_tokens": True}, "input_tokens must be a whole number"),
        ({"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 3}, "exceed input"),
        ({"output_tokens": 1, "reasoning_tokens": 2}, "exceed output"),
    ],
)
def test_usage_refuses_counts_that_cannot_be(fields, problem):
    with pytest.raises(ValueError, match=problem):
        Usage(**fields)


@pytest.fixture
def cold_caches():
    """Forget the bundled snapshot and every lookup, so the test sees them built."""
    pricing._lookup.cache_clear()
    pricing._snapshot.cache_clear()
    yield
    pricing._lookup.cache_clear()


def refuse_network(*args, **kwargs):
    raise AssertionError("network access attempted")


MODELS = [
    "openai:gpt-4.1-mini",
    "anthropic:claude-sonnet-4-5",
    "bedrock_converse:anthropic.claude-3-5-sonnet-20240620-v1:0",
    "google_genai:gemini-2.5-flash",
    "azure_openai:gpt-4o",
    "ollama:llama3.1",
    "openai:no-such-model",
]


def test_no_network_access(monkeypatch, cold_caches):
    monkeypatch.setattr(socket.socket, "connect", refuse_network)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_network)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_network)
    monkeypatch.setattr(socket, "create_connection", refuse_network)
    monkeypatch.setattr(genai_prices.UpdatePrices, "fetch", refuse_network)

    costs = [Pricer().price(model, USAGE) for model in MODELS]

    assert sum(cost is not None for cost in costs) == 5
    assert not [t for t in threading.enumerate() if t.name.startswith("genai_prices")]


def test_no_network_access_from_a_fresh_interpreter():
    # Imports genai-prices for the first time with every socket operation refused.
    script = textwrap.dedent(
        f"""
        import sys, threading

        def refuse(event, args):
            if event.startswith("socket."):
                raise RuntimeError(f"network access attempted: {{event}}")

        sys.addaudithook(refuse)
        from meshagent.models.pricing import Pricer, Usage
        usage = Usage(input_tokens=1000, cache_read_tokens=100, output_tokens=10)
        costs = [Pricer().price(model, usage) for model in {MODELS!r}]
        assert sum(cost is not None for cost in costs) == 5, costs
        assert not [t for t in threading.enumerate() if t.name.startswith("genai_prices")]
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_auto_updated_prices_are_never_used(monkeypatch, cold_caches):
    # What UpdatePrices installs after a fetch: here, a price list without any model.
    empty = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", empty)

    cost = Pricer().price("anthropic:claude-sonnet-4-5", USAGE, at=AT)

    assert cost is not None
    assert cost.version == genai_prices.__version__


def test_pricing_a_response_is_cheap_after_warm_up():
    pricer = Pricer({"openai:custom": PriceOverride(input_per_mtok=1, output_per_mtok=2)})
    for model in ("anthropic:claude-sonnet-4-5", "deepseek:deepseek-chat", "openai:custom"):
        assert pricer.price(model, USAGE) is not None  # warm-up

        best = min(timeit.repeat(lambda m=model: pricer.price(m, USAGE), number=500, repeat=5))

        assert best / 500 < 50e-6, model

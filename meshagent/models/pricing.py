"""What a model response cost, in exact USD: from `meshagent.toml` price overrides, else from the
price list bundled with genai-prices (never fetched from the network).

Token counts follow LangChain's ``UsageMetadata``: ``input_tokens`` includes the tokens read from
and written to the prompt cache, and ``output_tokens`` includes reasoning tokens. Each token is
billed once: uncached input at the input rate, cache reads and writes at their own rates (the input
rate when the price has none), output at the output rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Context, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from meshagent.models.providers import BUILTIN_MODELS

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

    from meshagent.config import PriceOverride

__all__ = ["PROVIDER_IDS", "Cost", "Pricer", "Usage", "unknown_cost_message"]

#: LangChain provider name -> genai-prices provider id; None where no public price list applies
#: (local models, gateways that host many vendors' models). Every name in PROVIDERS is listed.
PROVIDER_IDS: dict[str, str | None] = {
    "anthropic": "anthropic",
    "anthropic_bedrock": "aws",
    "azure_ai": "azure",
    "azure_openai": "azure",
    "baseten": "baseten",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "bedrock_mantle_anthropic": "aws",
    "bedrock_mantle_openai": "aws",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "fireworks": "fireworks",
    "google_anthropic_vertex": "google",
    "google_genai": "google",
    "google_vertexai": "google",
    "groq": "groq",
    "huggingface": None,
    "ibm": None,
    "langsmith": None,
    "litellm": "litellm",  # genai-prices reads the vendor from a "vendor/model" name
    "meta": "meta",
    "mistralai": "mistral",
    "nvidia": None,
    "ollama": None,
    "openai": "openai",
    "openrouter": "openrouter",
    "perplexity": "perplexity",
    "together": "together",
    "upstage": None,
    "xai": "x-ai",
}

GENAI_PRICES = "genai-prices"
OVERRIDES = "meshagent.toml"
BUILTIN = "builtin"

# Fixed precision so the caller's decimal context cannot round a price; 60 digits never round.
_CTX = Context(prec=60)
_ZERO = Decimal(0)

_Rate: TypeAlias = "Decimal | TieredPrices"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one or more model responses, counted as LangChain counts them."""

    input_tokens: int = 0
    """All input tokens, including cache reads and cache writes."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    """All output tokens, including reasoning."""
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{field.name} must be a whole number >= 0, not {value!r}")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"cache reads ({self.cache_read_tokens}) and writes ({self.cache_write_tokens}) "
                f"exceed input_tokens ({self.input_tokens}), which must include them"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens "
                f"({self.output_tokens}), which must include them"
            )

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens neither read from nor written to the cache."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @classmethod
    def from_usage_metadata(cls, meta: Mapping[str, Any] | None) -> Usage:
        """Usage from LangChain's ``AIMessage.usage_metadata``; None (not reported) is no usage."""
        if not meta:
            return cls()
        inputs = meta.get("input_token_details") or {}
        outputs = meta.get("output_token_details") or {}
        # langchain-anthropic reports writes by cache lifetime and then sets cache_creation to 0;
        # older versions report both, so the larger of the two is the number of writes.
        by_ttl = _count(inputs, "ephemeral_5m_input_tokens") + _count(
            inputs, "ephemeral_1h_input_tokens"
        )
        return cls(
            input_tokens=_count(meta, "input_tokens"),
            cache_read_tokens=_count(inputs, "cache_read"),
            cache_write_tokens=max(_count(inputs, "cache_creation"), by_ttl),
            output_tokens=_count(meta, "output_tokens"),
            reasoning_tokens=_count(outputs, "reasoning"),
        )


def _count(mapping: Mapping[str, Any], key: str) -> int:
    value = mapping.get(key)
    return 0 if value is None else value


@dataclass(frozen=True, slots=True)
class Cost:
    """Exact USD cost of some usage, and which price it came from."""

    input_usd: Decimal
    """Uncached input tokens, plus any per-request fee of the price."""
    cache_usd: Decimal
    """Cache reads and cache writes."""
    output_usd: Decimal
    """Output tokens, reasoning included."""
    source: str
    """Where the price came from: "genai-prices", "meshagent.toml" or "builtin"."""
    version: str
    """The genai-prices version whose bundled prices were used, else the same as source."""
    model_ref: str
    """The price entry used: "provider:model" of genai-prices, the override key, or the model."""

    @property
    def total_usd(self) -> Decimal:
        """Input, cache and output together."""
        return _CTX.add(_CTX.add(self.input_usd, self.cache_usd), self.output_usd)


class _Rates(NamedTuple):
    """USD per million tokens (per request for ``request``); None where the price has none."""

    input: _Rate | None
    cache_read: _Rate | None
    cache_write: _Rate | None
    output: _Rate | None
    reasoning: _Rate | None = None
    request: _Rate | None = None


class _Entry(NamedTuple):
    """A genai-prices model matched to a model string, with the rates of each of its prices."""

    model: ModelInfo
    model_ref: str
    rates: dict[int, _Rates]  # keyed by id() of the model's ModelPrice objects, which it keeps


class Pricer:
    """Prices model usage: overrides first, then the builtin models, then genai-prices."""

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None) -> None:
        self._overrides = {
            key: _Rates(
                input=price.input_per_mtok,
                cache_read=price.cache_read_per_mtok,
                cache_write=price.cache_write_per_mtok,
                output=price.output_per_mtok,
            )
            for key, price in (overrides or {}).items()
        }

    def price(self, model: str, usage: Usage, *, at: datetime | None = None) -> Cost | None:
        """The cost of ``usage`` on ``model`` at ``at`` (None: now; naive: UTC), None if unknown."""
        if (rates := self._overrides.get(model)) is not None:
            return _cost(rates, usage, OVERRIDES, OVERRIDES, model)
        if model in BUILTIN_MODELS:
            return Cost(_ZERO, _ZERO, _ZERO, BUILTIN, BUILTIN, model)
        entry = _lookup(model)
        if entry is None:
            return None
        model_price = entry.model.get_prices(at or datetime.now(UTC))
        rates = entry.rates.get(id(model_price)) or _rates_of(model_price)
        return _cost(rates, usage, GENAI_PRICES, _genai_version(), entry.model_ref)


def unknown_cost_message(model: str) -> str:
    """What to tell the user when ``model`` has no known price."""
    return (
        f"cost unknown for {model}: add a price override to meshagent.toml, e.g.\n"
        f'[prices."{model}"]\n'
        "input_per_mtok = 0.0  # USD per million input tokens (0 for a local model)\n"
        "output_per_mtok = 0.0  # USD per million output tokens"
    )


def _cost(rates: _Rates, usage: Usage, source: str, version: str, model_ref: str) -> Cost | None:
    """Bill each token once; None when tokens were used that the price does not cover."""
    if (usage.input_tokens and rates.input is None) or (
        usage.output_tokens and rates.output is None
    ):
        return None
    prompt = usage.input_tokens  # tiers switch on the whole prompt, cache included
    input_rate = _resolve(rates.input, prompt, _ZERO)
    output_rate = _resolve(rates.output, prompt, _ZERO)
    input_usd = _per_mtok(usage.uncached_input_tokens, input_rate)
    if rates.request is not None:  # the price of one request, quoted per thousand
        input_usd = _CTX.add(input_usd, _CTX.scaleb(_resolve(rates.request, prompt, _ZERO), -3))
    cache_usd = _CTX.add(
        _per_mtok(usage.cache_read_tokens, _resolve(rates.cache_read, prompt, input_rate)),
        _per_mtok(usage.cache_write_tokens, _resolve(rates.cache_write, prompt, input_rate)),
    )
    output_usd = _CTX.add(
        _per_mtok(usage.output_tokens - usage.reasoning_tokens, output_rate),
        _per_mtok(usage.reasoning_tokens, _resolve(rates.reasoning, prompt, output_rate)),
    )
    return Cost(input_usd, cache_usd, output_usd, source, version, model_ref)


def _per_mtok(tokens: int, usd_per_mtok: Decimal) -> Decimal:
    return _CTX.scaleb(_CTX.multiply(usd_per_mtok, tokens), -6) if tokens else _ZERO


def _resolve(rate: _Rate | None, prompt_tokens: int, default: Decimal) -> Decimal:
    """The rate for a prompt this long (a tier applies once the prompt exceeds its start)."""
    if rate is None:
        return default
    if isinstance(rate, Decimal):
        return rate
    for tier in reversed(rate.tiers):  # sorted by start
        if prompt_tokens > tier.start:
            return tier.price
    return rate.base


def _rates_of(model_price: ModelPrice) -> _Rates:
    return _Rates(
        input=model_price.input_mtok,
        cache_read=model_price.cache_read_mtok,
        cache_write=model_price.cache_write_mtok,
        output=model_price.output_mtok,
        reasoning=model_price.output_reasoning_mtok,
        request=model_price.requests_kcount,
    )


@lru_cache(maxsize=1024)
def _lookup(model: str) -> _Entry | None:
    """The genai-prices model for a LangChain model string, None if it has none."""
    provider_name, _, model_name = model.partition(":")
    provider_id = PROVIDER_IDS.get(provider_name)
    if provider_id is None or not model_name:
        return None
    snapshot = _snapshot()
    try:
        provider, info = snapshot.find_provider_model(model_name, None, provider_id, None)
    except LookupError:
        return None
    # A provider may borrow another's price list (Azure serves OpenAI's models): name the owner.
    owners = [provider, *(p for p in snapshot.providers if p is not provider)]
    owner = next((p for p in owners if any(m is info for m in p.models)), provider)
    prices = [info.prices] if not isinstance(info.prices, list) else [c.prices for c in info.prices]
    rates = {id(price): _rates_of(price) for price in prices}
    return _Entry(info, f"{owner.id}:{info.id}", rates)


@lru_cache(maxsize=1)
def _snapshot() -> DataSnapshot:
    """The price list bundled with genai-prices; never its auto-updated one, never the network."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


@lru_cache(maxsize=1)
def _genai_version() -> str:
    from genai_prices import __version__

    return __version__

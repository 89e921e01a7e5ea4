"""The token estimate, and the base the offline and scripted models share."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

# --------------------------------------------------------------------------- token estimate

# Every match is one token: a run of letters, digits or punctuation is cut greedily into pieces
# of at most 7, 3 and 3 characters, which are as many as the run's started 7s and 3s; a line
# break counts once at the start of its run of whitespace ((?<!\s)); any other character that is
# neither ASCII nor whitespace, one each. Counting the matches is done in C: a loop in Python over
# each run cost 4x as much (0.16 ms for a 1 KB JSON context, twice a run).
_TOKENS = re.compile(
    r"[A-Za-z]{1,7}"
    r"|[0-9]{1,3}"
    r"|(?<!\s)[ \t\r\f\v]*\n"
    r"|[^\x00-\x7f\s]"
    r"|[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]{1,3}"
)


def estimate_tokens(text: str) -> int:
    """Approximate BPE token count of ``text``; deterministic and within ~30% for English and JSON.

    The text is cut into runs, and each run costs:

    * a run of ASCII letters: one token per started 7 letters (``the`` 1, ``deployment`` 2);
    * a run of digits: one token per started 3 digits (``2024`` 2), as BPE tokenizers group them;
    * a run of ASCII punctuation: one token per started 3 characters (``":"`` 1, ``"},{"`` 2);
    * a run of whitespace that starts with spaces or tabs and then a line break: 1 (any other
      run of whitespace joins the next run: 0);
    * any other character that is not whitespace (accented, CJK, emoji): 1 each.

    English prose comes to about 1.3 tokens per word and JSON to about 3 characters per token,
    as with the cl100k/o200k tokenizers.
    """
    return len(_TOKENS.findall(text))


def text_of(content: str | list[Any]) -> str:
    """The text of a message content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(parts)


def input_estimate(messages: Sequence[BaseMessage]) -> int:
    """Estimated input tokens of a call: every message's text and any tool calls it made."""
    total = 0
    for message in messages:
        total += estimate_tokens(text_of(message.content))
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += estimate_tokens(call["name"]) + estimate_tokens(json.dumps(call["args"]))
    return total


def output_estimate(message: AIMessage) -> int:
    """Estimated output tokens of an answer: its text and its tool calls."""
    return input_estimate([message])


def token_usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


# --------------------------------------------------------------------------- shared base
_LINE_CHARS = 100


def clip(text: str, limit: int = _LINE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


# --------------------------------------------------------------------------- shared base


def _tool_name(tool: Any) -> str:
    """The name a tool is called by, whatever form it was given in."""
    from langchain_core.tools import BaseTool  # agent mode only: a direct run binds no tools

    if isinstance(tool, BaseTool):
        return tool.name
    if isinstance(tool, dict):
        function = tool.get("function")
        if isinstance(function, dict) and "name" in function:
            return str(function["name"])
        return str(tool.get("name") or tool.get("type") or "?")
    return str(getattr(tool, "__name__", type(tool).__name__))


class LocalChatModel(BaseChatModel):
    """What the offline and scripted models share: tool binding, token counts, trace params."""

    model_name: str = "local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` by :func:`estimate_tokens` (no tokenizer is downloaded)."""
        return estimate_tokens(text)

    def _record_tools(self, names: list[str]) -> None:
        """Hook: remember the names of tools bound to this model."""

    def _respond(self, messages: list[BaseMessage]) -> tuple[float, Callable[[], ChatResult]]:
        """Hook: the seconds to wait before answering, and the answer to give after them."""
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        delay, answer = self._respond(messages)
        if delay:
            time.sleep(delay)
        return answer()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        delay, answer = self._respond(messages)
        if delay:
            await asyncio.sleep(delay)
        return answer()

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (as OpenAI tool schemas) so agent loops can run on this model."""
        self._record_tools([_tool_name(tool) for tool in tools])
        schemas = [
            tool if isinstance(tool, dict) else convert_to_openai_tool(tool) for tool in tools
        ]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=schemas, **kwargs)

"""Translate with any transformers seq2seq MT model (NLLB, M2M100, Marian): batched, on the GPU when present,
long texts cut into sentence chunks that fit the model and joined back."""

from __future__ import annotations

from arastory.errors import ConfigError
from arastory.translate.base import TranslationFailed, Translator
from arastory.translate.segments import segment


class HFTranslator(Translator):
    """`model` is an HF id or a local dir loaded with from_pretrained; `src_lang`/`tgt_lang` are the model's own
    language codes (NLLB: eng_Latn/arb_Arab, M2M100: en/ar; Marian: none, use `prefix` for multi-target models)."""

    def __init__(
        self,
        model: str,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        prefix: str = "",
        batch_size: int = 16,
        max_input_tokens: int = 200,
        max_new_tokens: int = 256,
        length_ratio: float = 2.0,
        num_beams: int = 1,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ):
        super().__init__()
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if batch_size < 1 or max_input_tokens < 8 or max_new_tokens < 1:
            raise ConfigError("translator", "batch_size, max_input_tokens (>= 8) and max_new_tokens must be positive")
        self.model_name, self.src_lang, self.tgt_lang, self.prefix = model, src_lang, tgt_lang, prefix
        self.batch_size, self.max_input_tokens, self.max_new_tokens = batch_size, max_input_tokens, max_new_tokens
        self.length_ratio, self.num_beams = length_ratio, num_beams
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        torch_dtype = _dtype(dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(
                model, dtype=torch_dtype, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as error:
            raise ConfigError(
                "translator.model", f"'{model}' cannot be loaded as a seq2seq MT model: {_first_line(error)}"
            ) from None
        self.model.to(self.device).eval()
        if src_lang:
            if _lang_id(self.tokenizer, src_lang) is None:
                raise ConfigError("translator.src_lang", f"'{src_lang}' is not a language code of {model}")
            self.tokenizer.src_lang = src_lang
        self.forced_bos = None
        if tgt_lang:
            self.forced_bos = _lang_id(self.tokenizer, tgt_lang)
            if self.forced_bos is None:
                raise ConfigError("translator.tgt_lang", f"'{tgt_lang}' is not a language code of {model}")
        self.label = f"hf:{model}"
        self.generate_calls = 0  # for tests and the report: how the work was batched

    def identity(self) -> dict:
        return {"label": self.label, "model": self.model_name, "src_lang": self.src_lang, "tgt_lang": self.tgt_lang}

    def estimated_cost(self) -> float:
        return 0.0  # local compute: no per-character price

    def translate(self, texts: list[str]) -> list[str | TranslationFailed]:
        layouts = [segment(text, self._token_length, self.max_input_tokens) for text in texts]
        chunks = [chunk for layout in layouts for chunk in layout.chunks]
        translated = self.translate_chunks(chunks)
        out: list[str | TranslationFailed] = []
        start = 0
        for layout in layouts:
            out.append(layout.join(translated[start : start + len(layout.chunks)]))
            start += len(layout.chunks)
        self.stats.add(characters=sum(len(t) for t in texts), segments=len(chunks))
        return out

    def translate_chunks(self, chunks: list[str]) -> list[str]:
        """Generate for chunks sorted by length (less padding per batch), returned in the original order."""
        import torch

        order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))
        results: list[str] = [""] * len(chunks)
        for start in range(0, len(order), self.batch_size):
            batch_ids = order[start : start + self.batch_size]
            batch = [self.prefix + chunks[i] for i in batch_ids]
            inputs = self.tokenizer(
                batch, return_tensors="pt", padding=True, truncation=True, max_length=self.max_input_tokens
            ).to(self.device)
            lengths = inputs["attention_mask"].sum(dim=1)
            self.stats.add(
                truncated_segments=int((lengths >= self.max_input_tokens).sum()), input_tokens=int(lengths.sum())
            )
            # Cap the output by the input length too: a model stuck repeating stops early (ratio is ours).
            budget = min(self.max_new_tokens, int(lengths.max()) * self.length_ratio + 16)
            with torch.inference_mode():
                generated = self.model.generate(
                    **inputs,
                    forced_bos_token_id=self.forced_bos,
                    max_new_tokens=int(budget),
                    num_beams=self.num_beams,
                    do_sample=False,
                )
            self.generate_calls += 1
            pad = self.tokenizer.pad_token_id
            self.stats.add(output_tokens=int((generated != pad).sum()) if pad is not None else int(generated.numel()))
            texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for i, text in zip(batch_ids, texts, strict=False):
                results[i] = text.strip()
        return results

    def _token_length(self, text: str) -> int:
        return len(self.tokenizer(self.prefix + text, add_special_tokens=True)["input_ids"])


def _lang_id(tokenizer, code: str) -> int | None:
    """The token id of a language code (M2M100 wraps codes as __en__, NLLB uses them as they are)."""
    if hasattr(tokenizer, "get_lang_id"):
        try:
            return tokenizer.get_lang_id(code)
        except KeyError:
            return None
    # A language code is a special (added) token; an ordinary subword that happens to spell "ar" is not one.
    if code not in tokenizer.get_added_vocab() and code not in tokenizer.all_special_tokens:
        return None
    return tokenizer.convert_tokens_to_ids(code)


def _dtype(name: str, device: str):
    import torch

    if name == "auto":  # half precision on a GPU (ours: bf16), full precision on a CPU
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return getattr(torch, name)
    except AttributeError:
        raise ConfigError(
            "translator.dtype", f"'{name}' is not a torch dtype (auto, float32, bfloat16, float16)"
        ) from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]

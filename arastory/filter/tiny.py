"""A tiny sentence-transformers encoder built locally (random 1-layer BERT, WordPiece trained on given texts).

It has no real cross-lingual knowledge; it exists so the encoder path (loading by path, batching, caching,
GPU placement) runs offline in tests and benchmarks, exactly as LaBSE would.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_sentence_encoder(
    root: str | Path, texts: list[str], hidden_size: int = 32, vocab_size: int = 2000, max_seq_length: int = 128
) -> Path:
    """Save a SentenceTransformer (Transformer + mean Pooling) under <root>/st and return that path."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizer

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1)
    wordpiece.save(str(root / "tokenizer.json"))
    tokenizer = BertTokenizer(tokenizer_file=str(root / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max(256, max_seq_length),
    )
    BertModel(config).save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    transformer = Transformer(str(root / "hf"), max_seq_length=max_seq_length)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")])
    model.save(str(root / "st"))
    return root / "st"

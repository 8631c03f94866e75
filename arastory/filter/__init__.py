"""Translation filter: cross-lingual similarity (sentence encoder or bilingual lexicon), cheap checks, dedup, leakage.

python -m arastory.filter input=bundled out=outputs/filter/bundled encoder=lexicon
python -m arastory.filter input=outputs/translate/parallel.jsonl out=outputs/filter/labse filter.threshold=0.9
"""

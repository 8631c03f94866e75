"""The study's five judge criteria, defined once: ids, the names and questions raters see, and the labels judges use.

The study's judge asked for Fluency, Coherence, Following Instructions, Consistency and Variety (1-5 each); the
questions and Arabic names are ours. The judge rubric, the answer parser and the human rating sheet all read this.
"""

from __future__ import annotations

CRITERION_INFO: dict[str, dict] = {
    "fluency": {
        "ar": "الطلاقة",
        "en": "Fluency",
        "ar_q": "هل اللغة سليمة وطبيعية وسهلة القراءة؟",
        "en_q": "Is the language natural, grammatical and easy to read?",
        "labels": ["fluency", "الطلاقه", "طلاقه"],
    },
    "coherence": {
        "ar": "التماسك",
        "en": "Coherence",
        "ar_q": "هل تتتابع الأحداث بشكل منطقي وتبدو القصة كلًّا واحدًا؟",
        "en_q": "Do the events follow logically, as one whole story?",
        "labels": ["coherence", "التماسك", "تماسك"],
    },
    "instruction_following": {
        "ar": "اتباع التعليمات",
        "en": "Instruction following",
        "ar_q": "هل تلتزم القصة بكل ما طُلب في التعليمات (العمر، المكان، النهاية، عدد الشخصيات...)؟",
        "en_q": "Does the story meet every requirement of the instructions?",
        "labels": [
            "instruction_following",
            "instructions_following",
            "following_instructions",
            "instruction_adherence",
            "instructions",
            "اتباع_التعليمات",
            "اتباع التعليمات",
            "الالتزام_بالتعليمات",
            "الالتزام بالتعليمات",
        ],
    },
    "consistency": {
        "ar": "الاتساق",
        "en": "Consistency",
        "ar_q": "هل تبقى الشخصيات والأسماء والأماكن والتفاصيل ثابتة من البداية إلى النهاية؟",
        "en_q": "Do characters, names, places and facts stay the same throughout?",
        "labels": ["consistency", "الاتساق", "اتساق"],
    },
    "variety": {
        "ar": "اللهجة",
        "en": "Variety",
        "ar_q": "هل القصة مكتوبة كلها باللهجة المطلوبة؟",
        "en_q": "Is the story written in the required variety throughout?",
        "labels": ["variety", "dialect", "language_variety", "اللهجه", "لهجه", "التنوع اللغوي"],
    },
}
CRITERIA: tuple[str, ...] = tuple(CRITERION_INFO)

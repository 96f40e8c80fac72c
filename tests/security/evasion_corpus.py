"""The word-list evaluation set: evasions per category and ordinary school sentences.

`tests/security/test_wordlist_evasions.py` asserts on it and `bench/moderation_text.py` prints
per-category recall and the false-positive rate from it. Each evasion uses a technique that
passed the strict school policy before the normaliser learnt it (issue #15), applied to terms
of every category, beside the techniques that already worked (kept so they keep working).
"""

from __future__ import annotations

# (text, category that must be found)
EVASIONS: list[tuple[str, str]] = [
    # techniques from issue #15
    ("p*rn", "sexual"),
    ("pr0n", "sexual"),
    ("poooorn", "sexual"),
    ("porns", "sexual"),
    ("做。爱", "sexual"),
    ("做a爱", "sexual"),
    ("zuo ai", "sexual"),
    ("se qing", "sexual"),
    ("zhan shou", "violence_gore"),
    ("作爱", "sexual"),
    # the same techniques on other categories
    ("f**k this", "sexual"),
    ("n*des", "sexual"),
    ("nuuuude", "sexual"),
    ("beheadings", "violence_gore"),
    ("b*head", "violence_gore"),
    ("kiiiill yourself", "self_harm"),
    ("sui*ide", "self_harm"),
    ("zi sha", "self_harm"),
    ("自。杀", "self_harm"),
    ("自x杀", "self_harm"),
    ("斩a首", "violence_gore"),
    ("sha ren", "violence_gore"),
    ("zhina", "hate"),
    ("支。那", "hate"),
    ("subhum*n", "hate"),
    ("pedos", "minors"),
    ("luo li", "minors"),
    ("tai du", "politically_sensitive"),
    ("fa lun gong", "politically_sensitive"),
    # techniques that already worked, on the same terms
    ("p0rn", "sexual"),
    ("p o r n", "sexual"),
    ("ｐｏｒｎ", "sexual"),
    ("pórn", "sexual"),
    ("色 情", "sexual"),
    ("色情", "sexual"),
    ("做愛", "sexual"),
    ("自殺", "self_harm"),
    ("k1ll y0urself", "self_harm"),
    ("斬首", "violence_gore"),
]

# Ordinary sentences a school (and a shop) writes: nothing here may be flagged.
ORDINARY: list[str] = [
    "Xia Yu helps a classmate who dropped her books.",
    "夏雨在操场上帮助摔倒的同学。",
    "The class visits Scunthorpe on a field trip.",
    "We found an assassin bug in the school garden.",
    "Li Wei hits the shuttlecock over the net.",
    "The cocktail party is for the parents' association.",
    "Our classics teacher explains Sussex and Essex history.",
    "Al Gore's documentary is discussed in geography class.",
    "The kids wear nude-coloured ballet shoes.",
    "Tom passes the ball to Sam and they score together.",
    "Anna shares her lunch with a new student.",
    "The butterflies in the garden are beautiful this spring.",
    "Class 3B plants trees along the river bank.",
    "The team sees their coach and cheers.",
    "Zhang Wei reads a book about sea turtles.",
    "Wang Fang learns to say sorry and make peace.",
    "He tells the truth even when it is hard.",
    "She hugs her grandmother at the school gate.",
    "A student returns a lost wallet to its owner.",
    "The class cleans the beach and sorts the rubbish.",
    "The boys practise basketball after classes.",
    "The girls' choir sings at the spring concert.",
    "Our bus passes the old bridge on the way to the museum.",
    "The classes compete in the sports day relay.",
    "小明把捡到的钱包交给老师。",
    "同学们在植树节一起种树。",
    "李华主动向同学道歉，两人和好如初。",
    "老师带领大家参观科技馆。",
    "小红帮助奶奶过马路。",
    "我们班在运动会上获得了第一名。",
    "她认真工作爱岗敬业，是大家的榜样。",
    "他们合作爱护校园环境。",
    "天空是蓝色的。情况很好，大家都很开心。",
    "今天是红色。情人节快乐！",
    "同学们在异性交往中互相尊重。",
    "小刚每天坚持锻炼身体。",
    "停车坐爱枫林晚，霜叶红于二月花。",
    "学生们观看关于保护熊猫的纪录片。",
    "这个学期我们学习近平面几何。",
    "A bright red coat on a snowy New York street.",
    "The model wears a nude lipstick and a silk scarf.",
    "Our summer dresses come in sizes XS to XXL.",
    "Sleeveless tops for hot days at the beach.",
    "This jacket has a hood and two deep pockets.",
]

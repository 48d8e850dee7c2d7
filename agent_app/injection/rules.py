"""The built-in detector: instruction-shaped phrases (verb + target + qualifier), not words,
in English, French, German, Spanish, Italian, Portuguese, Dutch, Russian, Chinese and
Japanese, read in every form `normalise` gives a task.

"attack", "ignore", "system", "password" or "kill" alone never match; "ignore the
formatting rules" does not either, while "ignore all previous instructions" does. A phrase
found only once the text is decoded or unobfuscated scores more than in plain text: hiding
an instruction is a sign of intent."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent_app.injection.normalise import Forms, forms
from agent_app.validation import InjectionVerdict

# Terms are written case-folded and without accents, as `normalise` gives the text.
_OVERRIDE_VERBS = [
    # en
    "ignore", "ignoring", "disregard", "forget", "override", "bypass", "skip", "drop",
    "discard", "abandon", "neglect", "pay no attention to", "do not follow", "don't follow",
    "stop following", "set aside", "throw away", "overwrite",
    # fr
    "ignorez", "ignorer", "ignores", "oublie", "oubliez", "oublier", "ne tiens pas compte",
    "ne tenez pas compte", "fais abstraction", "faites abstraction", "ne suis pas",
    "ne suivez pas", "outrepasse", "outrepassez", "contourne", "contournez",
    # de
    "ignoriere", "ignorieren", "ignoriert", "vergiss", "vergessen", "vergesst", "missachte",
    "missachten", "beachte nicht", "befolge nicht", "uberschreibe", "umgehe",
    # es, it, pt
    "ignora", "ignorar", "ignoren", "olvida", "olvide", "olvidar", "olviden", "descarta",
    "descarte", "omite", "omita", "haz caso omiso", "no sigas", "no sigan", "pasa por alto",
    "dimentica", "dimenticate", "trascura", "esqueca", "esquece", "desconsidere",
    "desconsidera",
    # nl, ru
    "negeer", "vergeet", "игнорируй", "игнорируйте", "проигнорируй", "забудь", "забудьте",
]  # fmt: skip
# Nouns that, with a qualifier such as "all", name the assistant's own instructions.
_STRONG_TARGETS = [
    "instruction", "instructions", "prompt", "prompts", "directive", "directives",
    "guideline", "guidelines", "guardrails", "system message", "programming", "directions",
    "consigne", "consignes", "anweisung", "anweisungen", "instruktion", "instruktionen",
    "vorgaben", "richtlinien", "instruccion", "instrucciones", "indicaciones", "directrices",
    "istruzioni", "instrucoes", "diretrizes", "instructies", "инструкции", "инструкций",
    "указания",
]  # fmt: skip
# Nouns as often about something else ("the firewall rules"): only with a qualifier that
# points back at the conversation ("previous", "your", "system").
_WEAK_TARGETS = [
    "rule", "rules", "command", "commands", "constraints", "restrictions", "policies",
    "context", "orders", "regle", "regles", "contraintes", "regeln", "befehle", "reglas",
    "normas", "ordenes", "restricciones", "regole", "regras", "regels", "правила",
]  # fmt: skip
_STRONG_QUALIFIERS = [
    "previous", "prior", "above", "earlier", "preceding", "foregoing", "your", "system",
    "original", "initial", "safety", "precedent", "precedente", "precedentes", "precedents",
    "anterieur", "anterieures", "anterieurs", "ci-dessus", "vos", "tes", "systeme",
    "initiales", "originales", "vorherigen", "vorigen", "bisherigen", "obigen", "deine",
    "deinen", "ursprunglichen", "fruheren", "anteriores", "previas", "tus", "sistema",
    "de arriba", "precedenti", "tue", "vorige", "eerdere", "предыдущие", "предыдущих",
]  # fmt: skip
_ANY_QUALIFIERS = [
    "all", "any", "every", "toutes", "tous", "alle", "allen", "todas", "todos", "tutte",
    "все", "всех",
]  # fmt: skip
_ZH_VERBS = (
    "忽略|无视|無視|忽视|忽視|忘记|忘記|忘掉|不要理会|不要理會|不理会|跳过|跳過|抛开|拋開|放弃|放棄"
)
_ZH_QUALIFIERS = (
    "之前|以上|上面|上述|所有|全部|先前|前面|原有|原来|原來|系统|系統|你的|以前|上記|すべて"
)
_ZH_TARGETS = "指令|指示|说明|說明|规则|規則|提示|命令|设定|設定|约束|約束|限制|ルール"


def _words(terms: list[str]) -> str:
    return "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))


# Within one sentence (NFKC has made full-width stops and marks plain ones).
_END = r"[^.!?;\n]"
_OVERRIDE = re.compile(
    rf"(?<!\w)(?:{_words(_OVERRIDE_VERBS)})(?!\w){_END}{{0,60}}?"
    rf"(?<!\w)(?P<target>{_words(_STRONG_TARGETS + _WEAK_TARGETS)})(?!\w)"
)
_STRONG = re.compile(rf"(?<!\w)(?:{_words(_STRONG_QUALIFIERS)})(?!\w)")
_ANY = re.compile(rf"(?<!\w)(?:{_words(_ANY_QUALIFIERS)})(?!\w)")
_STRONG_TARGET_SET = frozenset(_STRONG_TARGETS)
_ZH_OVERRIDE = re.compile(
    rf"(?:{_ZH_VERBS})[^。!?\n]{{0,12}}?(?:{_ZH_QUALIFIERS})[^。!?\n]{{0,10}}?(?:{_ZH_TARGETS})"
)
# Japanese puts the verb last: "以前の指示をすべて無視して".
_JA_OVERRIDE = re.compile(
    rf"(?:{_ZH_QUALIFIERS})[^。!?\n]{{0,10}}?(?:{_ZH_TARGETS})[^。!?\n]{{0,8}}?(?:無視|忘れ)"
)
_FORGET_EVERYTHING = re.compile(
    r"(?<!\w)(?:forget|ignore|disregard) (?:about )?everything (?:above|before|you(?:'ve| have| were)"
    r"|i (?:said|told)|(?:that )?(?:was|has been) said)|(?<!\w)(?:vergiss|vergesst) alles"
    r"|(?<!\w)(?:oublie|oubliez) tout(?!\w)|(?<!\w)(?:olvida|olvide) todo(?!\w)"
    r"|(?:忘记|忘記|忘掉|忽略)(?:一切|所有内容|所有內容|以上所有)"
)


def _override(text: str) -> bool:
    if any(p.search(text) for p in (_ZH_OVERRIDE, _JA_OVERRIDE, _FORGET_EVERYTHING)):
        return True
    for match in _OVERRIDE.finditer(text):
        # The qualifier may come before the noun (en, de) or after it (fr, es).
        window = text[match.start() : match.end() + 30]
        window = window[: next((i for i, c in enumerate(window) if c in ".!?;\n"), len(window))]
        if _STRONG.search(window):
            return True
        if match.group("target") in _STRONG_TARGET_SET and _ANY.search(window):
            return True
    return False


_REVEAL_VERBS = (
    r"reveal|show|print|repeat|output|leak|dump|display|tell me|give me|write out|share|"
    r"expose|recite|spell out|copy|echo|what (?:is|are|were|was)|revele|revelez|montre|"
    r"montrez|affiche|affichez|donne|donnez|repete|repetez|ecris|imprime|zeig|zeige|zeigen|"
    r"verrat|verrate|gib|nenne|wiederhole|drucke|gib aus|revela|revele|muestra|muestrame|"
    r"dime|imprime|repite|escribe|ensename|mostra|rivela|stampa|mostre|покажи|выведи|"
    r"повтори"
)
_REVEAL = re.compile(
    rf"(?<!\w)(?:{_REVEAL_VERBS})(?!\w){_END}{{0,40}}?(?:"
    # "your (initial|system|...) prompt|instructions"
    r"(?<!\w)(?:your|ur|ton|votre|tes|vos|dein|deine|deinen|ihre|ihren|tu|tus|su|sus|"
    r"tue|il tuo|le tue|seu|suas|твои|твой)\s+(?:\w+\s+){0,3}?(?:system ?prompt|prompt|"
    r"instructions|system message|directives|guidelines|programming|configuration|"
    r"invite|consignes|systemprompt|anweisungen|instruktionen|instrucciones|indicaciones|"
    r"istruzioni|instrucoes|инструкции|промпт)(?!\w)"
    # "the hidden|secret|system prompt|instructions"
    r"|(?<!\w)(?:the|its|le|la|les|den|die|das|el|los|las)\s+(?:hidden|secret|"
    r"confidential|internal|developer|cache|cachees|geheimen|versteckten|ocultas|"
    r"secretas)\s+(?:prompt|instructions|message|consignes|anweisungen|instrucciones)(?!\w)"
    r"|(?<!\w)prompt (?:systeme|del sistema|di sistema|do sistema)(?!\w))"
)
_REPEAT_ABOVE = re.compile(
    r"(?<!\w)(?:repeat|print|output|copy|echo|recite|write|reproduce)(?!\w)"
    rf"{_END}{{0,30}}?(?<!\w)(?:everything|all|text|words|content|lines?|messages?)(?!\w)"
    rf"{_END}{{0,25}}?(?<!\w)(?:above|before this|before my|preceding|prior to)(?!\w)"
    r"|(?<!\w)(?:starting|beginning|begin|start) with ['\"]?you are(?!\w)"
    r"|(?<!\w)what (?:were|are|was) you (?:told|instructed|programmed)(?!\w)"
    r"|(?<!\w)(?:prompt|instructions)(?!\w)[^.!?\n]{0,20}?(?<!\w)verbatim(?!\w)"
)
_ZH_REVEAL = re.compile(
    r"(?:显示|顯示|输出|輸出|告诉我|告訴我|打印|泄露|洩露|透露|重复|重複|给我看|給我看|展示|说出|說出)"
    r"[^。!?\n]{0,12}?(?:系统提示|系統提示|系统指令|系統指令|系统消息|系統消息|初始指令|原始指令|"
    r"提示词|提示詞|你的指令|你的提示|隐藏指令|隱藏指令)"
)


def _reveal(text: str) -> bool:
    return bool(_REVEAL.search(text) or _REPEAT_ABOVE.search(text) or _ZH_REVEAL.search(text))


_ROLE = re.compile(
    r"(?<!\w)you are now (?:an? )?(?:unrestricted|unfiltered|uncensored|free|evil|jailbroken|"
    r"dan|different|new|no longer|called|named|going to|in \w+ mode)(?!\w)"
    r"|(?<!\w)you(?:'re| are) no longer (?:an? |bound|restricted|required|chatgpt|limited)"
    r"|(?<!\w)from now on,? (?:you|your)(?!\w)"
    r"|(?<!\w)act as (?:an? )?(?:unrestricted|unfiltered|jailbroken|evil|uncensored|amoral)"
    r"|(?<!\w)pretend (?:that )?(?:you (?:have no|are not bound|don'?t have|are free)|to be dan)"
    r"|(?<!\w)(?:tu es|vous etes) (?:maintenant|desormais)(?!\w)"
    r"|(?<!\w)a partir de maintenant,? (?:tu|vous)(?!\w)"
    r"|(?<!\w)du bist (?:jetzt|nun|ab jetzt|ab sofort)(?!\w)|(?<!\w)ab (?:jetzt|sofort),? bist du"
    r"|(?<!\w)ahora eres(?!\w)|(?<!\w)a partir de ahora,? (?:eres|tu|seras)(?!\w)"
    r"|你现在是|你現在是|从现在开始你|從現在開始你|从现在起你|從現在起你"
)
# The personas by name, in capitals and as a persona: "the DAN format" is a bank's.
_PERSONA_CASED = re.compile(
    r"(?i:you|pretend|act|become|called|named|as|be)\W+(?:\w+\W+){0,3}?(?:DAN|STAN|DUDE)\b"
    r"|\b(?:DAN|STAN|DUDE)\b\W+(?:\w+\W+){0,3}?(?i:mode|stands for|can do anything)"
)
_PERSONA = re.compile(
    r"(?<!\w)do anything now(?!\w)|(?<!\w)jailbroken(?!\w)|(?<!\w)jailbreak mode(?!\w)"
    r"|(?<!\w)(?:you|your|chatgpt|gpt|assistant|ai|model|llm)(?!\w)[^.!?\n]{0,40}?"
    r"(?<!\w)(?:developer|dev|god|jailbreak|unrestricted|unfiltered|evil|sudo|opposite|dan) mode"
    r"|(?<!\w)(?:developer|god|jailbreak|unrestricted|unfiltered|evil|dan) mode "
    r"(?:enabled|activated|output)(?!\w)"
    r"|(?<!\w)(?:enter|enable|activate|switch to|simulate) (?:jailbreak|god|unrestricted|"
    r"unfiltered|evil|dan|sudo) mode"
    r"|(?<!\w)(?:no|without any|without) (?:ethical|moral) (?:guidelines|restrictions|limits|"
    r"boundaries|compass|constraints)|(?<!\w)evil confidant(?!\w)"
    r"|(?<!\w)(?:unfiltered|uncensored) (?:ai|assistant|model|chatbot|version of you)(?!\w)"
)


def _persona(text: str, cased: str) -> bool:
    return bool(_PERSONA.search(text) or _PERSONA_CASED.search(cased))


_RESTRICTIONS = re.compile(
    r"(?<!\w)(?:without|with no|free (?:of|from)|remove|disable|turn off|deactivate|ignore)\s+"
    r"(?:any\s+|all\s+|your\s+|the\s+)?(?:restrictions|filters|safety|guardrails|limitations|"
    r"censorship|content policy|moderation|safety filters)(?!\w)"
    r"|(?<!\w)sans (?:aucune )?(?:restriction|restrictions|filtre|filtres|censure)(?!\w)"
    r"|(?<!\w)ohne (?:jegliche )?(?:einschrankungen|filter|zensur)(?!\w)"
    r"|(?<!\w)sin (?:ninguna )?(?:restriccion|restricciones|filtros|censura)(?!\w)"
    r"|没有任何限制|不受任何限制|沒有任何限制|不受限制"
)
_TEMPLATE = re.compile(
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
    r"end_header_id)\|>|\[/?inst\]|\[/?sys(?:tem)?\]|<</?sys>>"
    r"|</?(?:system|assistant|developer|sys|instructions?|admin|system_prompt)(?:\s[^>]{0,40})?>"
    r"|</(?:user|human|user_input|input)>\s*<"
    r"|(?:^|\n)\s*#{1,6}\s*(?:system|assistant|developer)(?:\s+(?:prompt|message))?\s*:?\s*(?:$|\n)"
    r"|(?:^|\n)\s*(?:system|developer) (?:prompt|message|override|instructions?)\s*:"
)
_MARKER = r"(?:#{2,}|={3,}|-{3,}|\*{2,}|\[{1,2}|<{2,}|>{2,})"
_FAKE_HEADER = re.compile(
    rf"{_MARKER}\s*(?:new|updated|override|overriding|system|admin|administrator|developer|"
    r"priority|important|urgent|critical|hidden|secret)\s+(?:instructions?|prompt|override|"
    r"directives?|update|message|mode|command)(?!\w)"
    rf"|{_MARKER}\s*instructions?\s+(?:override|update)(?!\w)"
    rf"|{_MARKER}\s*(?:end of|begin(?:ning of)?|start of)\s+(?:the\s+)?(?:user input|prompt|"
    r"instructions|system prompt|conversation|context|document)(?!\w)"
    r"|(?<!\w)(?:nouvelles instructions|neue anweisungen|nuevas instrucciones|新的指令|新指令)"
    rf"\s*{_MARKER}?\s*:"
)
_SENSITIVE_DATA = (
    r"api[_ -]?keys?|credentials|secrets?|passwords?|tokens?|env(?:ironment)? var(?:iable)?s|"
    r"\.env|conversation|chat history|system prompt|private data|personal data|user data|"
    r"session data|memory|mots de passe|identifiants|cles api|passworter|passwort|"
    r"zugangsdaten|api-schlussel|contrasenas|credenciales|claves|密码|密碼|凭证|憑證|密钥|"
    r"密鑰|令牌"
)
_EXFILTRATION = re.compile(
    r"(?:send|post|upload|exfiltrate|forward|email|e-mail|transmit|leak|append|include|"
    r"embed|paste|envoie|envoyez|transmets|sende|schicke|schick|envia|envie|manda|"
    r"发送|發送|上传|上傳|传给|傳給)"
    rf"{_END}{{0,60}}?(?:{_SENSITIVE_DATA}){_END}{{0,60}}?"
    r"(?:https?://|(?<!\w)www\.|(?<!\w)[\w.+-]+@[\w-]+\.\w+|webhook|attacker|my server)"
    r"|!\[[^\]]*\]\(https?://[^)\s]*\?[^)\s]*=(?:\{|\$|<|\[)"
)
_DECODE_AND_OBEY = re.compile(
    r"(?<!\w)(?:decode|decrypt|translate|convert|unscramble|read)(?!\w)[^.!?\n]{0,50}?"
    r"(?<!\w)(?:and|then)(?!\w)[^.!?\n]{0,20}?(?<!\w)(?:follow|execute|obey|carry out|"
    r"comply|act on|do what)(?!\w)"
)


@dataclass(frozen=True)
class Rule:
    reason: str
    weight: float
    matches: Callable[[str, str], bool]  # (case-folded text, text as written)


RULES: tuple[Rule, ...] = (
    Rule("override_instructions", 0.6, lambda t, _: _override(t)),
    Rule("reveal_system_prompt", 0.6, lambda t, _: _reveal(t)),
    Rule("role_reassignment", 0.4, lambda t, _: bool(_ROLE.search(t))),
    Rule("jailbreak_persona", 0.5, _persona),
    Rule("restriction_removal", 0.3, lambda t, _: bool(_RESTRICTIONS.search(t))),
    Rule("chat_template_tokens", 0.5, lambda t, _: bool(_TEMPLATE.search(t))),
    Rule("fake_instruction_header", 0.4, lambda t, _: bool(_FAKE_HEADER.search(t))),
    Rule("credential_exfiltration", 0.4, lambda t, _: bool(_EXFILTRATION.search(t))),
    Rule("decode_and_obey", 0.3, lambda t, _: bool(_DECODE_AND_OBEY.search(t))),
)
# Found only once the text was unobfuscated or decoded, or hidden by invisible characters.
OBFUSCATION = ("obfuscation", 0.3)
ENCODED = ("encoded_payload", 0.3)
INVISIBLE = ("invisible_characters", 0.3)

_GLUE = (
    "a an the and or of to in on for with me my you your now are is be this that these "
    "those what tell print show give reveal everything above before new mode do not"
)
VOCABULARY = frozenset(
    word
    for terms in (
        _OVERRIDE_VERBS,
        _STRONG_TARGETS,
        _WEAK_TARGETS,
        _STRONG_QUALIFIERS,
        _ANY_QUALIFIERS,
        _GLUE.split(),
        _REVEAL_VERBS.split("|"),
        ["system", "prompt", "developer", "jailbreak", "restrictions", "instructions", "dan"],
    )
    for term in terms
    for word in re.findall(r"[a-z]+", term)
)


def read(text: str) -> Forms:
    """`text` in the forms the rules read."""
    return forms(text, VOCABULARY)


def reasons(seen: Forms) -> list[str]:
    """The reasons the rules give for a text, with the obfuscation ones, in a fixed order."""
    plain = {r.reason for r in RULES if r.matches(seen.plain, seen.cased)}
    folded = (
        {r.reason for r in RULES if r.matches(seen.folded, seen.folded)} if seen.folded else set()
    )
    decoded = {r.reason for d in seen.decoded for r in RULES if r.matches(d, d)}
    found = [r.reason for r in RULES if r.reason in plain | folded | decoded]
    if seen.invisible:
        found.append(INVISIBLE[0])
    if folded - plain:
        found.append(OBFUSCATION[0])
    if decoded - plain - folded:
        found.append(ENCODED[0])
    return found


WEIGHTS: dict[str, float] = {
    **{r.reason: r.weight for r in RULES},
    **dict([OBFUSCATION, ENCODED, INVISIBLE]),
}


def verdict(
    found: list[str], extra: float, flag_score: float, reject_score: float
) -> InjectionVerdict:
    """The verdict on the reasons found, `extra` added to their weights."""
    score = round(sum(WEIGHTS.get(r, 0.0) for r in found) + extra, 3)
    if score >= reject_score:
        return InjectionVerdict(action="reject", score=score, reasons=found)
    if score >= flag_score:
        return InjectionVerdict(action="flag", score=score, reasons=found)
    return InjectionVerdict(action="allow", score=score, reasons=found)


def check_injection(text: str, flag_score: float, reject_score: float) -> InjectionVerdict:
    """The built-in rules' verdict on a task."""
    return verdict(reasons(read(text)), 0.0, flag_score, reject_score)

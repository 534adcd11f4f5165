"""`mombot eval`: the answer check, the question-set format and its errors, the report's
statistics, and a small end-to-end run on the real SmolLM2 server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.eval.answer_check import Expected, extracted, final_number, first_yes_no, is_right
from bot.eval.question_sets import BUNDLED, QuestionSetError, arithmetic, load, parse_jsonl
from bot.eval.report import wilson

NUMBER = Expected(("1250",))


@pytest.mark.parametrize(
    ("reply", "expected", "right"),
    [
        ("The answer is 1250.", NUMBER, True),
        ("The total is $1,250 for the week.", NUMBER, True),
        ("It costs 1,250 dollars.", NUMBER, True),
        ("1250.0", NUMBER, True),
        # the stated answer wins over a number mentioned after it
        ("The answer is 1250, which is 50 more than 1200.", NUMBER, True),
        ("So 5 weeks at 250 each make 1250 in all.", NUMBER, True),
        ("About 1200, maybe 1300.", NUMBER, False),
        ("I cannot tell.", NUMBER, False),
        # reasoning is folded away before anything is read
        ("<think>The answer is 1250.</think>The answer is 1200.", NUMBER, False),
        ("<think>maybe 12</think>So 1250.", NUMBER, True),
        ("He walks 12 km, then 5 km: 17 km.", Expected(("17",)), True),
        ("It drops to -3 degrees.", Expected(("-3",)), True),
        ("No. 91 = 7 × 13, so it is not prime; yes, I am sure.", Expected(("no",)), True),
        ("Yes — but not always; no exceptions here.", Expected(("no",)), False),
        ("I'd say nothing is certain.", Expected(("no",)), False),  # "nothing" is not "no"
        ("Paris, of course.", Expected(("Paris",)), True),
        ("Parisians love it.", Expected(("Paris",)), False),  # whole words only
        ("It was LEONARDO DA VINCI.", Expected(("Leonardo", "da Vinci")), True),
        ("Red is one.", Expected(pattern=r"\b(red|blue|yellow)\b"), True),
        ("Green.", Expected(pattern=r"\b(red|blue|yellow)\b"), False),
    ],
)
def test_every_reply_is_read_by_the_questions_rule(
    reply: str, expected: Expected, right: bool
) -> None:
    assert is_right(reply, expected) is right


def test_what_the_rules_read_out() -> None:
    assert final_number("first 3, then 4, so 7 apples") == 7
    assert final_number("The result is: 2,048 tokens, not 4") == 2048
    assert final_number("no numbers here") is None
    assert first_yes_no("Well... YES, it is.") == "yes"
    assert first_yes_no("Maybe.") is None
    assert extracted("<think>no</think>Yes.", Expected(("yes",))) == "yes"
    assert Expected(("3", "three")).kind == "text"
    assert Expected(("3",)).kind == "number"
    assert Expected(("Yes",)).kind == "yesno"


def test_a_set_in_the_documented_format() -> None:
    questions = parse_jsonl(
        "# my set\n"
        '{"question": "Capital of France?", "answers": ["Paris"], "tag": "geo"}\n'
        "\n"
        '{"question": "Is 9 prime?", "answers": ["no"]}\n'
        '{"question": "A primary colour?", "pattern": "red|blue"}\n'
        '{"question": "6 times 7?", "answers": [42]}\n',
        "mine.jsonl",
    )
    assert [q.expected.kind for q in questions] == ["text", "yesno", "pattern", "number"]
    assert questions[0].tag == "geo" and questions[1].tag == ""
    assert is_right("It is 42.", questions[3].expected)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "mine.jsonl:2: not JSON"),
        ('["a list"]', "mine.jsonl:2: expected an object"),
        ('{"answers": ["x"]}', "mine.jsonl:2: 'question' must be a non-empty string"),
        ('{"question": "q"}', "mine.jsonl:2: give either 'answers' or 'pattern'"),
        ('{"question": "q", "answers": ["x"], "pattern": "x"}', "give either"),
        ('{"question": "q", "answers": []}', "'answers' must be a non-empty list"),
        ('{"question": "q", "pattern": "(unclosed"}', "'pattern' is not a regular expression"),
        ('{"question": "q", "answers": ["x"], "tag": 3}', "'tag' must be a string"),
        ('{"question": "q", "answer": ["x"]}', "unknown field(s) answer"),
    ],
)
def test_a_bad_line_is_named_with_its_problem(line: str, problem: str) -> None:
    good = '{"question": "Fine?", "answers": ["yes"]}'
    with pytest.raises(QuestionSetError, match=re.escape(problem)):
        parse_jsonl(f"{good}\n{line}\n", "mine.jsonl")


def test_an_empty_or_missing_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(QuestionSetError, match="no questions"):
        parse_jsonl("# only a comment\n\n", "empty.jsonl")
    with pytest.raises(QuestionSetError, match="cannot read it"):
        load(str(tmp_path / "missing.jsonl"))


def test_the_bundled_sets_load_and_the_arithmetic_is_exact() -> None:
    for name in BUNDLED:
        assert len(load(name)) >= 30
    first, again, other = arithmetic(50, seed=1), arithmetic(50, seed=1), arithmetic(50, seed=2)
    assert first == again and first != other
    for question in first:
        numbers = [int(n) for n in re.findall(r"\d+", question.text)]
        answer = int(question.expected.answers[0])
        text = question.text
        if "more. How many" in text:
            assert answer == numbers[0] + numbers[1]
        elif "gave away" in text:
            assert answer == numbers[0] - numbers[1]
        elif "boxes with" in text:
            assert answer == numbers[0] * numbers[1]
        elif "equally among" in text:
            assert answer * numbers[1] == numbers[0]
        elif "packs of" in text:
            assert answer == numbers[0] + numbers[1] * numbers[2] - numbers[3]
        else:
            assert answer == numbers[0] * numbers[1]


def test_the_wilson_interval() -> None:
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    low, high = wilson(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    low, high = wilson(30, 30)
    assert high == 1.0 and low == pytest.approx(0.8865, abs=1e-3)


def test_a_bad_set_file_exits_non_zero_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?", "answers": ["yes"]}\n{"question": 5}\n')
    config = tmp_path / "config.toml"
    config.write_text(f'[bot]\ndata_dir = "{tmp_path / "data"}"\n')
    code = main(["--config", str(config), "eval", "--set", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"mombot eval: {bad}:2: 'question' must be a non-empty string"
    assert main(["--config", str(config), "eval", "--set", "nonsense"]) == 2
    assert "nonsense: cannot read it" in capsys.readouterr().err


def test_eval_on_the_real_model_reports_every_configuration(tmp_path: Path) -> None:
    """The whole command as a user runs it: the embedded server, three members and a
    synthesizer, a small set of its own; JSON out, the user's history untouched."""
    data = tmp_path / "data"
    members = "".join(
        f'[[characters]]\nname = "{name}"\ntemperature = 0\nmax_tokens = 24\n'
        f'persona = "You are {name}. Answer briefly."\n'
        for name in ("logic", "critic", "knowledge")
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{data}"\n[embedded]\nn_ctx = 512\n{members}'
        '[[characters]]\nname = "mom"\nrole = "synthesizer"\ntemperature = 0\n'
        'max_tokens = 32\npersona = "You are mom."\n'
    )
    questions = tmp_path / "set.jsonl"
    questions.write_text(
        '{"question": "What is 2 plus 2?", "answers": ["4"]}\n'
        '{"question": "Is the sun a star?", "answers": ["yes"], "tag": "yesno"}\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "eval", "--set", str(questions)]
        + ["--think", "2", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    names = [row["config"] for row in report["configurations"]]
    assert names == [
        "logic",
        "critic",
        "knowledge",
        "mom",
        "mixture",
        "mixture - logic",
        "mixture - critic",
        "mixture - knowledge",
        "think",
    ]
    for row in report["configurations"]:
        assert row["asked"] == 2 and row["errors"] == 0, row
        assert 0 <= row["low"] <= row["share"] <= row["high"] <= 1
        assert row["median_s"] > 0 and row["median_tokens"] > 0
        if row["config"].startswith("mixture - "):
            assert row["adds"] is not None
    outcomes = report["outcomes"]
    assert len(outcomes) == 2 * len(names)
    assert all(o["reply"].strip() for o in outcomes)
    # a leave-one-out reads fewer proposals than the mixture, so it costs fewer tokens
    for question in (0, 1):
        cost = {o["config"]: o["tokens"] for o in outcomes if o["question"] == question}
        assert cost["mixture - logic"] < cost["mixture"]
    assert "mombot eval" in result.stderr  # the progress bar
    assert not (data / "mombot.db").exists()  # the user's history was never touched


def test_only_names_a_configuration_that_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        '[[characters]]\nname = "logic"\n[[characters]]\nname = "critic"\n'
        '[[characters]]\nname = "mom"\nrole = "synthesizer"\n'
    )
    code = main(["--config", str(config), "eval", "--set", "facts", "--only", "mom,logc"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "mombot eval: --only: no configuration logc (there are: logic, critic, mom, mixture, think)"
    )

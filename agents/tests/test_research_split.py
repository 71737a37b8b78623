"""The researcher's question splitter and model-free digest (no database)."""

from __future__ import annotations

import pytest

from agents.research import NOTHING_FOUND, Finding, digest, split_question


@pytest.mark.parametrize(
    ("question", "queries"),
    [
        # short and split: the whole question first, then its clauses
        (
            "What do I know about Anna's trip to Lisbon and when is her flight?",
            [
                "Anna's trip to Lisbon and when is her flight",
                "Anna's trip to Lisbon",
                "when is her flight",
            ],
        ),
        # "and" inside a noun phrase is not a clause boundary
        ("Tell me about my cats and dogs", ["my cats and dogs"]),
        (
            "Please tell me everything about the kitchen renovation",
            ["the kitchen renovation"],
        ),
        # ";", "also" and "and" between clauses; too long to keep whole
        (
            "research the project budget and the project timeline; "
            "also who approved the vendor contract?",
            [
                "the project budget",
                "the project timeline",
                "who approved the vendor contract",
            ],
        ),
        (
            "Can you find out what I know about the Berlin conference, "
            "and what Tom said about the hotel",
            [
                "the Berlin conference, and what Tom said about the hotel",
                "the Berlin conference",
                "what Tom said about the hotel",
            ],
        ),
    ],
)
def test_split_question(question, queries):
    assert split_question(question) == queries


def test_bullet_lines_are_parts_and_duplicates_go():
    question = (
        "Research these:\n"
        "- the lease renewal date\n"
        "- deposit amount\n"
        "* who is the landlord\n"
        "1. The lease renewal date?"
    )

    assert split_question(question) == [
        "the lease renewal date",
        "deposit amount",
        "who is the landlord",
    ]


def test_at_most_max_parts_in_question_order():
    question = (
        "what did the doctor say about my knee? what exercises did she recommend? "
        "when is the next appointment? how much did the MRI cost? which pharmacy? "
        "what about insurance?"
    )

    assert split_question(question, max_parts=5) == [
        "what did the doctor say about my knee",
        "what exercises did she recommend",
        "when is the next appointment",
        "how much did the MRI cost",
        "which pharmacy",
    ]
    assert len(split_question(question, max_parts=2)) == 2


@pytest.mark.parametrize(
    "question", ["", "   ", "tell me please", "research?", "- \n* "]
)
def test_nothing_but_filler_is_no_query(question):
    assert split_question(question) == []


def test_split_is_deterministic():
    question = "Anna's trip and also Tom's job; the car?"

    assert split_question(question) == split_question(question)
    assert split_question(question) == [
        "Anna's trip and also Tom's job; the car",
        "Anna's trip",
        "Tom's job",
        "the car",
    ]


QUESTION = "What do I know about Anna's trip to Lisbon and when is her flight?"
FINDINGS = [
    Finding(
        "Anna's trip to Lisbon", 2, "Hotel booked: Casa Azul.", "m2", "a9", 1200, 0.6
    ),
    Finding(
        "Anna's trip to Lisbon",
        1,
        "Anna goes to Lisbon in May\n for a week with Tom.",
        "m1",
        None,
        None,
        0.8,
    ),
    Finding("Anna's trip to Lisbon", 3, "Lisbon is hilly.", "m3", None, None, 0.1),
]


def test_digest_lists_findings_per_sub_query_with_citations():
    text = digest(QUESTION, FINDINGS, per_query=2)

    assert text == (
        "Research: What do I know about Anna's trip to Lisbon and when is her flight?\n"
        "\n"
        "1. Anna's trip to Lisbon and when is her flight\n"
        f"   {NOTHING_FOUND}\n"
        "\n"
        "2. Anna's trip to Lisbon\n"
        "   - Anna goes to Lisbon in May for a week with Tom. [1]\n"
        "   - Hotel booked: Casa Azul. [2]\n"
        "\n"
        "3. when is her flight\n"
        "   nothing found in your memories\n"
        "\n"
        "Sources:\n"
        "[1] memory m1\n"
        "[2] memory m2, attachment a9 at offset 1200\n"
    )


def test_digest_without_findings_says_so_for_every_sub_query():
    text = digest("Tom's job; the car", [])

    # the whole (short) question, then its two parts
    assert text.count(NOTHING_FOUND) == 3
    assert "Sources" not in text


def test_digest_shortens_long_findings_and_keeps_unknown_sub_queries():
    long = Finding("something else", 7, "word " * 200, "m7", None, None, 0.5)

    text = digest("the car", [long])

    assert "2. something else" in text
    (bullet,) = [line for line in text.splitlines() if line.endswith("[7]")]
    assert len(bullet) < 260
    assert "…" in bullet

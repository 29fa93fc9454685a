"""A deterministic CPU-bound Python workload for the capture benchmarks.

A mix of what profiled Python code typically does: recursion, a small
tokenizer and recursive-descent evaluator, dict and list churn, sorting. It
gives stacks of varied depth (about 5 to 25 frames) and runs for a time
proportional to `units`.

It deliberately avoids Python callbacks driven by C code (generator
expressions consumed by "".join, key=lambda, map with Python functions):
vmprof's signal handler can crash CPython 3.11 when it lands while such a
frame is being entered (see vmprof-format.md section 7), which would make a
benchmark fail for reasons that have nothing to do with what it measures.
"""

from __future__ import annotations

import sys
import time


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def tokenize(text: str) -> list:
    tokens = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isdigit():
            j = i
            while j < n and text[j].isdigit():
                j += 1
            tokens.append(int(text[i:j]))
            i = j
        elif c in "+-*/()":
            tokens.append(c)
            i += 1
        else:
            i += 1
    return tokens


class Parser:
    def __init__(self, tokens: list) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expr(self) -> int:
        value = self.term()
        while self.peek() in ("+", "-"):
            if self.take() == "+":
                value += self.term()
            else:
                value -= self.term()
        return value

    def term(self) -> int:
        value = self.factor()
        while self.peek() in ("*", "/"):
            if self.take() == "*":
                value *= self.factor()
            else:
                d = self.factor()
                value = value // d if d else value
        return value

    def factor(self) -> int:
        tok = self.take()
        if tok == "(":
            value = self.expr()
            self.take()  # ")"
            return value
        if tok == "-":
            return -self.factor()
        return tok


def make_expression(seed: int, depth: int) -> str:
    if depth == 0:
        return str(seed % 97 + 1)
    op = "+-*/"[seed % 4]
    left = make_expression(seed * 31 + 7, depth - 1)
    right = make_expression(seed * 17 + 3, depth - 1)
    return "(" + left + op + right + ")"


def evaluate(text: str) -> int:
    return Parser(tokenize(text)).expr()


def churn(n: int) -> int:
    table = {}
    for i in range(n):
        key = "k" + str(i % 257)
        table[key] = table.get(key, 0) + i
    items = list(table.items())
    total = 0
    for key, value in items:
        total += len(key) * value
    return total


def sort_records(n: int, seed: int) -> int:
    records = []
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        records.append((x % 1000, i, "r" + str(x % 50)))
    records.sort()
    return records[0][0] + records[-1][0]


def unit(i: int) -> int:
    """About 2-3 ms of CPU on a 2020s x86 core."""
    total = fib(14)
    total += evaluate(make_expression(i, 5))
    total += churn(600)
    total += sort_records(300, i)
    return total


def _loop(units: int) -> int:
    total = 0
    for i in range(units):
        total += unit(i)
    return total


# Six distinct frames between the entry point and the work, as an
# application's framework layers would add: real stacks are typically 10-13
# frames deep (vmprof-format.md section 8), and the record size follows.
def _layer6(units: int) -> int:
    return _loop(units)


def _layer5(units: int) -> int:
    return _layer6(units)


def _layer4(units: int) -> int:
    return _layer5(units)


def _layer3(units: int) -> int:
    return _layer4(units)


def _layer2(units: int) -> int:
    return _layer3(units)


def _layer1(units: int) -> int:
    return _layer2(units)


def run(units: int) -> int:
    return _layer1(units)


def clocked(marks: list):
    """run(), noting (wall, CPU) at its entry and exit in marks: the framing
    of a profiled call is the call minus what lies between them."""
    def work(units: int) -> int:
        marks.append((time.perf_counter(), time.process_time()))
        try:
            return run(units)
        finally:
            marks.append((time.perf_counter(), time.process_time()))
    return work


def calibrate(target_s: float) -> int:
    """Units that take about target_s seconds of CPU, measured here."""
    run(20)  # warm up
    t0 = time.process_time()
    n = 0
    while time.process_time() - t0 < 0.3:
        unit(n)
        n += 1
    per_unit = (time.process_time() - t0) / n
    return max(1, int(target_s / per_unit))


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print(calibrate(seconds))

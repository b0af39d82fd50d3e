"""GSM8K (openai/gsm8k, config `main`), from the hub or local files with the same schema.

Prompt: zero-shot chain of thought, or `task.num_fewshot` (<= 8) of the fixed exemplars of Wei et al. (2022)
as used by lm-evaluation-harness's gsm8k-cot (never gold solutions of training questions). Grading:
`task.answer_mode` strict (`#### N`), flexible (last number) or auto (strict when present, else flexible).
"""
from __future__ import annotations

from rewdistill.tasks.answers import extract_number
from rewdistill.tasks.base import Example
from rewdistill.tasks.real import FileTask, row_id
from rewdistill.tasks.rows import DataError, Row, require

# The eight chain-of-thought exemplars of Wei et al. (2022), written in GSM8K's own answer format.
FEWSHOT = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there "
     "will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6.\n#### 6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.\n#### 5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39.\n#### 39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8.\n"
     "#### 8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
     "5 + 4 = 9.\n#### 9"),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
     "were added. 9 + 20 is 29.\n#### 29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls.\n#### 33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8.\n#### 8"),
]


class GSM8K(FileTask):
    name = "gsm8k"
    hub = ("openai/gsm8k", "main")
    hub_splits = {"train": "train", "test": "test"}

    def parse(self, row: Row) -> Example:
        question = require(row, "question", str)
        solution = require(row, "answer", (str, int, float))
        answer = extract_number(str(solution), "auto")  # a solution ending in `#### N`, or a bare number
        if answer is None:
            raise DataError(f"{row.where}: field 'answer' has no final number (expected a solution ending "
                            "in '#### N' or a number)")
        return Example(qid=row_id(row, "id"), question=question, answer=answer, solution=str(solution))

    def prompt(self, ex: Example) -> str:
        k = self.opts.get("num_fewshot", 0)
        shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEWSHOT[:k])
        return f"{shots}Question: {ex.question}\nAnswer: Let's think step by step."

    def extract(self, response: str, ex: Example) -> str | None:
        return extract_number(response, self.opts.get("answer_mode", "auto"))

"""Writes ds1000-fixture.jsonl and ds1000-fixture-samples.jsonl: problems in DS-1000's own schema
(prompt, reference_code, code_context with generate_test_case / exec_test / test_execution
[/ test_string], metadata) written for this project, one per library, and samples whose verdicts
are known by construction (the "expect" field: pass or fail). Run once; the outputs are committed.
"""
import json

CONTEXT = '''import copy
{imports}


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
{inputs}
    def generate_ans(data):
{answer}
    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
{check}
    return 1


exec_context = r"""
{imports}
{unpack}
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range({cases}):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {{"test_input": test_input}}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
{extra}'''


def indent(text, n):
    return "\n".join(" " * n + l if l else l for l in text.strip("\n").split("\n")) + "\n"


def problem(pid, library, imports, inputs, unpack, answer, check, prompt, reference, cases=2, extra=""):
    ctx = CONTEXT.format(imports=imports, inputs=indent(inputs, 8), answer=indent(answer, 8), check=indent(check, 4),
                         unpack=unpack, cases=cases, extra=extra)
    return {"prompt": prompt, "reference_code": reference, "code_context": ctx,
            "metadata": {"problem_id": pid, "library_problem_id": pid, "library": library, "test_case_cnt": cases,
                         "perturbation_type": "Origin", "perturbation_origin_id": pid}}


P = []
P.append(problem(0, "Numpy", "import numpy as np",
                 "a = np.array([[1, 2], [3, 4]]) if test_case_id == 1 else np.arange(12).reshape(3, 4)\nreturn a",
                 "a = test_input", "a = data\nreturn a.sum(axis=0)", "np.testing.assert_array_equal(result, ans)",
                 "Problem:\nHow do I sum a 2-D numpy array over its rows, giving one value per column?\nA:\n<code>\n"
                 "import numpy as np\na = np.array([[1, 2], [3, 4]])\n</code>\nresult = ... # put solution in this variable\n"
                 "BEGIN SOLUTION\n<code>\n", "result = a.sum(axis=0)\n"))
P.append(problem(1, "Pandas", "import pandas as pd",
                 "df = pd.DataFrame({'a': [1, 2, 3], 'b': [4, 5, 6]})\nreturn df",
                 "df = test_input", "df = data\nreturn df[df['a'] > 1].reset_index(drop=True)",
                 "pd.testing.assert_frame_equal(result, ans)",
                 "Problem:\nKeep the rows of df whose column a is above 1, renumbered from 0.\nA:\n<code>\n"
                 "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': [4, 5, 6]})\n</code>\n"
                 "result = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n",
                 "result = df[df['a'] > 1].reset_index(drop=True)\n", cases=1))
P.append(problem(2, "Scipy", "import numpy as np\nfrom scipy import stats",
                 "x = np.array([1.0, 2.0, 4.0, 8.0])\nreturn x", "x = test_input",
                 "x = data\nreturn stats.gmean(x)", "assert abs(result - ans) < 1e-9",
                 "Problem:\nThe geometric mean of x with scipy.\nA:\n<code>\nimport numpy as np\nfrom scipy import stats\n"
                 "x = np.array([1.0, 2.0, 4.0, 8.0])\n</code>\nresult = ... # put solution in this variable\n"
                 "BEGIN SOLUTION\n<code>\n", "result = stats.gmean(x)\n", cases=1))
P.append(problem(3, "Sklearn", "import numpy as np\nfrom sklearn.preprocessing import StandardScaler",
                 "X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])\nreturn X", "X = test_input",
                 "X = data\nreturn StandardScaler().fit_transform(X)", "np.testing.assert_allclose(result, ans)",
                 "Problem:\nStandardise each column of X to zero mean and unit variance with scikit-learn.\nA:\n<code>\n"
                 "import numpy as np\nfrom sklearn.preprocessing import StandardScaler\nX = np.array([[1.0, 10.0], [2.0, 20.0], "
                 "[3.0, 30.0]])\n</code>\nresult = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n",
                 "result = StandardScaler().fit_transform(X)\n", cases=1,
                 extra="\n\ndef test_string(solution: str):\n    assert \"StandardScaler\" in solution\n"))
P.append(problem(4, "Pytorch", "import torch", "t = torch.tensor([[1.0, -2.0], [3.0, -4.0]])\nreturn t",
                 "t = test_input", "t = data\nreturn t.abs().max()", "assert torch.equal(result, ans)",
                 "Problem:\nThe largest absolute value in tensor t.\nA:\n<code>\nimport torch\nt = torch.tensor([[1.0, -2.0], "
                 "[3.0, -4.0]])\n</code>\nresult = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n",
                 "result = t.abs().max()\n", cases=1))
P.append(problem(5, "Tensorflow", "import tensorflow as tf", "x = tf.constant([1, 2, 3])\nreturn x",
                 "x = test_input", "x = data\nreturn tf.reduce_sum(x)", "assert int(result) == int(ans)",
                 "Problem:\nThe sum of tensor x.\nA:\n<code>\nimport tensorflow as tf\nx = tf.constant([1, 2, 3])\n</code>\n"
                 "result = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n", "result = tf.reduce_sum(x)\n",
                 cases=1))

WRONG = {0: "result = a.sum(axis=1)\n", 1: "result = df[df['a'] > 1]\n", 2: "result = x.mean()\n",
         3: "result = (X - X.mean(0)) / X.std(0)\n",  # right values, but test_string wants StandardScaler
         4: "result = t.max()\n", 5: "result = tf.reduce_max(x)\n"}

with open("ds1000-fixture.jsonl", "w") as f:
    for p in P:
        f.write(json.dumps(p) + "\n")
with open("ds1000-fixture-samples.jsonl", "w") as f:
    for p in P:
        pid = p["metadata"]["problem_id"]
        f.write(json.dumps({"task_id": f"DS1000/{pid}", "completion": p["reference_code"] + "</code>\n", "expect": "pass"}) + "\n")
        f.write(json.dumps({"task_id": f"DS1000/{pid}", "completion": WRONG[pid], "expect": "fail"}) + "\n")

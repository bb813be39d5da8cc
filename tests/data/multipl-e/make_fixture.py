"""Writes multipl-e-fixture.jsonl and multipl-e-fixture-samples.jsonl: one problem per language in
MultiPL-E's schema (name, language, prompt, doctests, original, prompt_terminology, tests,
stop_tokens), written for this project in the style of MultiPL-E's translations of HumanEval
(a function to complete, then a test harness that exits non-zero on a wrong answer), and samples
whose verdicts are known by construction ("expect": pass or fail). Run once; outputs committed.
"""
import json

P = {
    "cpp": ("#include<assert.h>\n#include<bits/stdc++.h>\n// Add two numbers x and y\nlong add(long x, long y) {\n",
            "}\nint main() {\n    auto candidate = add;\n    assert(candidate((0), (1)) == (1));\n    assert(candidate((5), (7)) == (12));\n}\n",
            ["\n}"], "    return x + y;\n}", "    return x - y;\n}"),
    "java": ("import java.util.*;\nimport java.lang.*;\n\nclass Problem {\n    // Add two numbers x and y\n    public static long add(long x, long y) {\n",
             "    }\n    public static void main(String[] args) {\n    assert(add((0l), (1l)) == (1l));\n    assert(add((5l), (7l)) == (12l));\n    }\n\n}\n",
             ["\n    }\n"], "        return x + y;\n    }\n", "        return x * y;\n    }\n"),
    "js": ("//Add two numbers x and y\nfunction add(x, y){\n",
           "\nconst assert = require('node:assert');\n\nfunction test() {\n  let candidate = add;\n  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(5, 7),12);\n}\n\ntest();\n",
           ["\nfunction ", "\n/*", "\n//", "\nconsole.log"], "  return x + y;\n}", "  return x - y;\n}"),
    "ts": ("//Add two numbers x and y\nfunction add(x: number, y: number): number {\n",
           "\ndeclare var require: any;\nconst assert = require('node:assert');\n\nfunction test() {\n  let candidate = add;\n  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(5, 7),12);\n}\n\ntest();\n",
           ["\nfunction ", "\n/*", "\n//", "\nclass"], "  return x + y;\n}", "  return \"\" + x + y;\n}"),
    "rs": ("/// Add two numbers x and y\nfn add(x: isize, y: isize) -> isize {\n",
           "}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n    assert_eq!(candidate(5, 7), 12);\n}\n",
           ["\n}"], "    x + y\n}", "    x - y\n}"),
    "go_test.go": ("package add_test\n\nimport (\n    \"testing\"\n    \"fmt\"\n)\n\n// Add two numbers x and y\nfunc add(x int, y int) int {\n",
                   "\nfunc TestAdd(t *testing.T) {\n  candidate := add\n\ttype test struct {\n\t\tactual   interface{}\n\t\texpected interface{}\n\t}\n   tests := []test{\n     { actual: candidate(0, 1), expected: 1 },\n     { actual: candidate(5, 7), expected: 12 },\n   }\n\n\tfor i, tc := range tests {\n\t\tt.Run(fmt.Sprintf(\"test num % d\", i), func(t *testing.T) {\n\t\t\tif fmt.Sprintf(\"%v\", tc.actual) != fmt.Sprintf(\"%v\", tc.expected) {\n\t\t\t\tt.Errorf(\"expected '%s', got '%s'\", tc.expected, tc.actual)\n\t\t\t}\n\t\t})\n\t}\n}\n",
                   ["\nfunc", "struct", "\n// "], "    return x + y\n}\n", "    return x * y\n}\n"),
    "php": ("<?php\n// Add two numbers x and y\nfunction add($x, $y) {\n",
            "\nfunction candidate(...$args) {\n    return add(...$args);\n}\n\nfunction test(): void {\n    if (candidate(0, 1) !== 1) { throw new Exception(\"Test failed!\"); }\n    if (candidate(5, 7) !== 12) { throw new Exception(\"Test failed!\"); }\n}\n\ntest();",
            ["\nfunction", "\n?>", "\n//", "\n#"], "    return $x + $y;\n}", "    return $x . $y;\n}"),
    "sh": ("#!/bin/bash\n# Add two numbers x and y\n#\n# $1 is an integer\n# $2 is an integer\nadd() {\n",
           "}\n\ncandidate() {\n    add \"$@\"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate \"0\" \"1\") = \"1\" ]]\n    [[ $(candidate \"5\" \"7\") = \"12\" ]]\n}\n\nrun_test",
           ["\n}"], "    echo $(( $1 + $2 ))\n}", "    echo $(( $1 - $2 ))\n}"),
}

with open("multipl-e-fixture.jsonl", "w") as f, open("multipl-e-fixture-samples.jsonl", "w") as s:
    for lang, (prompt, tests, stops, right, wrong) in P.items():
        short = lang.split("_")[0]
        name = f"HumanEval_53_add_{short}"
        f.write(json.dumps({"name": name, "language": lang, "prompt": prompt, "doctests": "transform",
                            "original": "HumanEval/53", "prompt_terminology": "reworded", "tests": tests,
                            "stop_tokens": stops}) + "\n")
        # The right answer runs on past its stop token (as a model's would): the cut keeps it whole.
        s.write(json.dumps({"task_id": name, "completion": right + "\n\n// trailing text past a stop token\n",
                            "expect": "pass"}) + "\n")
        s.write(json.dumps({"task_id": name, "completion": wrong, "expect": "fail"}) + "\n")

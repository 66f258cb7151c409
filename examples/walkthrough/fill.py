"""Fill the walkthrough's operation template with the handles `mex artifacts put --json` printed.
Usage: python3 fill.py TEMPLATE EXPR_HANDLE_FILE VARS_HANDLE_FILE > op.json"""
import json, sys, uuid

template, expr_file, vars_file = sys.argv[1:4]
op = json.load(open(template))
expr, vars_ = json.load(open(expr_file)), json.load(open(vars_file))
op["op_id"] = str(uuid.uuid4())
op["inputs"] = [expr, vars_]
op["params"]["expr_ref"] = expr["artifact_id"]
op["params"]["vars_ref"] = vars_["artifact_id"]
json.dump(op, sys.stdout, indent=2)

import json
print(json.dumps({"sum": sum(range(10))}, sort_keys=True))

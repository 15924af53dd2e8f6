import requests
import time

HOST = "http://localhost:5782"
API_KEY = "your-key-here"
HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

# List presets
presets = requests.get(f"{HOST}/api/v1/presets", headers=HEADERS).json()
print(f"Available presets: {[p['name'] for p in presets['presets']]}")

# Generate
resp = requests.post(
    f"{HOST}/api/v1/generate/{presets['presets'][0]['slug']}",
    headers=HEADERS,
    json={"count": 1},
).json()
job_id = resp["jobs"][0]["job_id"]
print(f"Queued job: {job_id}")

# Poll
while True:
    status = requests.get(f"{HOST}/api/v1/job/{job_id}", headers=HEADERS).json()
    print(f"Status: {status['status']}")
    if status["status"] in ("done", "failed"):
        break
    time.sleep(5)

if status["status"] == "done":
    image_url = f"{HOST}{status['result']['image_url']}"
    print(f"Image: {image_url}")
    print(f"Seed: {status['result']['seed']}")

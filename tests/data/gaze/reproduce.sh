API_KEY="your-key-here"
HOST="http://localhost:5782"

curl -X POST \
  -H "X-API-Key: $API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"seed": 927640517599332}' \
  "$HOST/api/v1/generate/example_01"

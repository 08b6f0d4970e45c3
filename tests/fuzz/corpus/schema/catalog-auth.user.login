{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "AuthEvents['auth.user.login']",
  "type": "object",
  "properties": {
    "userId": {
      "type": "string"
    },
    "email": {
      "type": "string",
      "format": "email"
    },
    "tier": {
      "type": "string"
    },
    "timestamp": {
      "type": "string",
      "format": "date-time",
      "description": "Date, serialized as an ISO 8601 string"
    }
  },
  "required": [
    "userId",
    "email",
    "tier",
    "timestamp"
  ]
}
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "user_id": {
      "type": "string"
    },
    "ip_address": {
      "type": "string",
      "anyOf": [
        {
          "format": "ipv4"
        },
        {
          "format": "ipv6"
        }
      ],
      "description": "IPv4 or IPv6 address"
    },
    "user_agent": {
      "type": "string"
    },
    "success": {
      "type": "boolean"
    }
  },
  "required": [
    "user_id",
    "ip_address",
    "user_agent",
    "success"
  ]
}
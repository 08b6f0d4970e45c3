/*
 * validator_metaschema.c — the JSON Schema 2020-12 meta-schema and its seven
 * vocabulary meta-schemas, embedded so that `{"$ref":
 * "https://json-schema.org/draft/2020-12/schema"}` resolves without fetching
 * anything (issue 3: references stay inside what Sluice holds).
 *
 * The documents are the ones json-schema.org publishes for draft 2020-12
 * (https://json-schema.org/draft/2020-12/schema and the seven under .../meta/,
 * from the json-schema-org/json-schema-spec repository, under its licence;
 * taken from ajv 8's dist/refs copy), minified and otherwise unchanged.
 * The compiler loads one only when a $ref names it, with `$vocabulary`
 * allowed, and its `format` keywords asserted like any other.
 */
#include <stddef.h>
#include <string.h>

#include "validator_internal.h"

static const struct {
    const char *uri;
    const char *text;
} documents[] = {
    {"https://json-schema.org/draft/2020-12/schema",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/schema\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/vocab/"
     "core\":tru"
     "e,\"https://json-schema.org/draft/2020-12/vocab/applicator\":true,\"https://json-schema.org/d"
     "raft/2020-12/vocab/unevaluated\":true,\"https://json-schema.org/draft/2020-12/vocab/validati"
     "on\":true,\"https://json-schema.org/draft/2020-12/vocab/meta-data\":true,\"https://"
     "json-schema"
     ".org/draft/2020-12/vocab/format-annotation\":true,\"https://json-schema.org/draft/2020-12/vo"
     "cab/content\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Core and Validation "
     "specifications met"
     "a-schema\",\"allOf\":[{\"$ref\":\"meta/core\"},{\"$ref\":\"meta/"
     "applicator\"},{\"$ref\":\"meta/unevaluat"
     "ed\"},{\"$ref\":\"meta/validation\"},{\"$ref\":\"meta/meta-data\"},{\"$ref\":\"meta/"
     "format-annotation\""
     "},{\"$ref\":\"meta/content\"}],\"type\":[\"object\",\"boolean\"],\"$comment\":\"This "
     "meta-schema also d"
     "efines keywords that have appeared in previous drafts in order to prevent incompatible ext"
     "ensions as they remain in common "
     "use.\",\"properties\":{\"definitions\":{\"$comment\":\"\\\"definiti"
     "ons\\\" has been replaced by "
     "\\\"$defs\\\".\",\"type\":\"object\",\"additionalProperties\":{\"$dynamicRe"
     "f\":\"#meta\"},\"deprecated\":true,\"default\":{}},\"dependencies\":{\"$comment\":"
     "\"\\\"dependencies\\\" h"
     "as been split and replaced by \\\"dependentSchemas\\\" and \\\"dependentRequired\\\" in "
     "order to s"
     "erve their differing "
     "semantics.\",\"type\":\"object\",\"additionalProperties\":{\"anyOf\":[{\"$dynam"
     "icRef\":\"#meta\"},{\"$ref\":\"meta/validation#/$defs/"
     "stringArray\"}]},\"deprecated\":true,\"default"
     "\":{}},\"$recursiveAnchor\":{\"$comment\":\"\\\"$recursiveAnchor\\\" has been replaced by "
     "\\\"$dynamic"
     "Anchor\\\".\",\"$ref\":\"meta/core#/$defs/"
     "anchorString\",\"deprecated\":true},\"$recursiveRef\":{\"$co"
     "mment\":\"\\\"$recursiveRef\\\" has been replaced by "
     "\\\"$dynamicRef\\\".\",\"$ref\":\"meta/core#/$defs/"
     "uriReferenceString\",\"deprecated\":true}}}"},
    {"https://json-schema.org/draft/2020-12/meta/core",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/core\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/vocab/"
     "core\":"
     "true},\"$dynamicAnchor\":\"meta\",\"title\":\"Core vocabulary "
     "meta-schema\",\"type\":[\"object\",\"bool"
     "ean\"],\"properties\":{\"$id\":{\"$ref\":\"#/$defs/"
     "uriReferenceString\",\"$comment\":\"Non-empty fragm"
     "ents not "
     "allowed.\",\"pattern\":\"^[^#]*#?$\"},\"$schema\":{\"$ref\":\"#/$defs/"
     "uriString\"},\"$ref\":{\""
     "$ref\":\"#/$defs/uriReferenceString\"},\"$anchor\":{\"$ref\":\"#/$defs/"
     "anchorString\"},\"$dynamicRef"
     "\":{\"$ref\":\"#/$defs/uriReferenceString\"},\"$dynamicAnchor\":{\"$ref\":\"#/$defs/"
     "anchorString\"},\""
     "$vocabulary\":{\"type\":\"object\",\"propertyNames\":{\"$ref\":\"#/$defs/"
     "uriString\"},\"additionalProp"
     "erties\":{\"type\":\"boolean\"}},\"$comment\":{\"type\":\"string\"},\"$defs\":{\"type\":"
     "\"object\",\"additio"
     "nalProperties\":{\"$dynamicRef\":\"#meta\"}}},\"$defs\":{\"anchorString\":{\"type\":"
     "\"string\",\"pattern"
     "\":\"^[A-Za-z_][-A-Za-z0-9._]*$\"},\"uriString\":{\"type\":\"string\",\"format\":\"uri\"},"
     "\"uriReference"
     "String\":{\"type\":\"string\",\"format\":\"uri-reference\"}}}"},
    {"https://json-schema.org/draft/2020-12/meta/applicator",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/applicator\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/"
     "vocab/"
     "applicator\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Applicator vocabulary "
     "meta-schema\",\"typ"
     "e\":[\"object\",\"boolean\"],\"properties\":{\"prefixItems\":{\"$ref\":\"#/$defs/"
     "schemaArray\"},\"items\""
     ":{\"$dynamicRef\":\"#meta\"},\"contains\":{\"$dynamicRef\":\"#meta\"},"
     "\"additionalProperties\":{\"$dyna"
     "micRef\":\"#meta\"},\"properties\":{\"type\":\"object\",\"additionalProperties\":{\"$"
     "dynamicRef\":\"#met"
     "a\"},\"default\":{}},\"patternProperties\":{\"type\":\"object\",\"additionalProperties\":{\"$"
     "dynamicRe"
     "f\":\"#meta\"},\"propertyNames\":{\"format\":\"regex\"},\"default\":{}},\"dependentSchemas\":"
     "{\"type\":\"o"
     "bject\",\"additionalProperties\":{\"$dynamicRef\":\"#meta\"},\"default\":{}},"
     "\"propertyNames\":{\"$dyn"
     "amicRef\":\"#meta\"},\"if\":{\"$dynamicRef\":\"#meta\"},\"then\":{\"$dynamicRef\":\"#meta\"},"
     "\"else\":{\"$dy"
     "namicRef\":\"#meta\"},\"allOf\":{\"$ref\":\"#/$defs/schemaArray\"},\"anyOf\":{\"$ref\":\"#/"
     "$defs/schemaA"
     "rray\"},\"oneOf\":{\"$ref\":\"#/$defs/"
     "schemaArray\"},\"not\":{\"$dynamicRef\":\"#meta\"}},\"$defs\":{\"sch"
     "emaArray\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"$dynamicRef\":\"#meta\"}}}}"},
    {"https://json-schema.org/draft/2020-12/meta/unevaluated",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/unevaluated\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/"
     "vocab"
     "/unevaluated\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Unevaluated applicator "
     "vocabulary met"
     "a-schema\",\"type\":[\"object\",\"boolean\"],\"properties\":{\"unevaluatedItems\":{\"$"
     "dynamicRef\":\"#me"
     "ta\"},\"unevaluatedProperties\":{\"$dynamicRef\":\"#meta\"}}}"},
    {"https://json-schema.org/draft/2020-12/meta/validation",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/validation\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/"
     "vocab/"
     "validation\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Validation vocabulary "
     "meta-schema\",\"typ"
     "e\":[\"object\",\"boolean\"],\"properties\":{\"type\":{\"anyOf\":[{\"$ref\":\"#/$defs/"
     "simpleTypes\"},{\"ty"
     "pe\":\"array\",\"items\":{\"$ref\":\"#/$defs/"
     "simpleTypes\"},\"minItems\":1,\"uniqueItems\":true}]},\"con"
     "st\":true,\"enum\":{\"type\":\"array\",\"items\":true},\"multipleOf\":{\"type\":\"number\","
     "\"exclusiveMini"
     "mum\":0},\"maximum\":{\"type\":\"number\"},\"exclusiveMaximum\":{\"type\":\"number\"},"
     "\"minimum\":{\"type\""
     ":\"number\"},\"exclusiveMinimum\":{\"type\":\"number\"},\"maxLength\":{\"$ref\":\"#/$defs/"
     "nonNegativeIn"
     "teger\"},\"minLength\":{\"$ref\":\"#/$defs/"
     "nonNegativeIntegerDefault0\"},\"pattern\":{\"type\":\"strin"
     "g\",\"format\":\"regex\"},\"maxItems\":{\"$ref\":\"#/$defs/"
     "nonNegativeInteger\"},\"minItems\":{\"$ref\":\""
     "#/$defs/"
     "nonNegativeIntegerDefault0\"},\"uniqueItems\":{\"type\":\"boolean\",\"default\":false},\"max"
     "Contains\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},\"minContains\":{\"$ref\":\"#/$defs/"
     "nonNegative"
     "Integer\",\"default\":1},\"maxProperties\":{\"$ref\":\"#/$defs/"
     "nonNegativeInteger\"},\"minProperties"
     "\":{\"$ref\":\"#/$defs/nonNegativeIntegerDefault0\"},\"required\":{\"$ref\":\"#/$defs/"
     "stringArray\"},"
     "\"dependentRequired\":{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#/$defs/"
     "stringArray\"}"
     "}},\"$defs\":{\"nonNegativeInteger\":{\"type\":\"integer\",\"minimum\":0},"
     "\"nonNegativeIntegerDefault"
     "0\":{\"$ref\":\"#/$defs/"
     "nonNegativeInteger\",\"default\":0},\"simpleTypes\":{\"enum\":[\"array\",\"boole"
     "an\",\"integer\",\"null\",\"number\",\"object\",\"string\"]},\"stringArray\":{\"type\":"
     "\"array\",\"items\":{\""
     "type\":\"string\"},\"uniqueItems\":true,\"default\":[]}}}"},
    {"https://json-schema.org/draft/2020-12/meta/meta-data",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/meta-data\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/vocab/"
     "m"
     "eta-data\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Meta-data vocabulary "
     "meta-schema\",\"type\":"
     "[\"object\",\"boolean\"],\"properties\":{\"title\":{\"type\":\"string\"},\"description\":{"
     "\"type\":\"string"
     "\"},\"default\":true,\"deprecated\":{\"type\":\"boolean\",\"default\":false},\"readOnly\":{"
     "\"type\":\"bool"
     "ean\",\"default\":false},\"writeOnly\":{\"type\":\"boolean\",\"default\":false},\"examples\":"
     "{\"type\":\"a"
     "rray\",\"items\":true}}}"},
    {"https://json-schema.org/draft/2020-12/meta/format-annotation",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/format-annotation\",\"$vocabulary\":{\"https://json-schema.org/draft/"
     "2020-12"
     "/vocab/format-annotation\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Format vocabulary "
     "meta-sc"
     "hema for annotation "
     "results\",\"type\":[\"object\",\"boolean\"],\"properties\":{\"format\":{\"type\":\"s"
     "tring\"}}}"},
    {"https://json-schema.org/draft/2020-12/meta/content",
     "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
     "json-schema.org/d"
     "raft/2020-12/meta/content\",\"$vocabulary\":{\"https://json-schema.org/draft/2020-12/vocab/"
     "con"
     "tent\":true},\"$dynamicAnchor\":\"meta\",\"title\":\"Content vocabulary "
     "meta-schema\",\"type\":[\"obje"
     "ct\",\"boolean\"],\"properties\":{\"contentEncoding\":{\"type\":\"string\"},"
     "\"contentMediaType\":{\"type"
     "\":\"string\"},\"contentSchema\":{\"$dynamicRef\":\"#meta\"}}}"},
};

const char *validator_metaschema_text(const char *uri)
{
    for (size_t i = 0; i < sizeof documents / sizeof documents[0]; i++)
        if (strcmp(documents[i].uri, uri) == 0) return documents[i].text;
    return NULL;
}

/*
 * validator_internal.h — the compiled form of a schema, shared by the compiler
 * (validator_compile.c), the evaluator (validator.c) and the URI helpers
 * (validator_uri.c). Nothing outside server/schema/ includes this.
 *
 * A schema compiles into a graph of `snode`s, one per subschema object.
 * Each node holds its keywords as an array of `kw`, sorted so that cheap,
 * commonly failing checks (type, const, enum) run first and the unevaluated*
 * keywords run last, after every keyword whose annotations they read.
 * Keywords that the specification evaluates together are compiled into one
 * `kw`: properties + patternProperties + additionalProperties (KW_PROPS),
 * prefixItems + items (KW_ITEMS), contains + minContains + maxContains
 * (KW_CONTAINS), if + then + else (KW_IF). `required` joins KW_PROPS when
 * both are present: the one pass over the members that finds the declared
 * properties also counts the required ones, so a valid event costs no extra
 * lookup per required name (issue 3's benchmark).
 *
 * All strings and JSON values a kw points at are borrowed from the schema's
 * private copy of the document (schema.doc), which lives as long as the schema.
 */
#ifndef SLUICE_SCHEMA_VALIDATOR_INTERNAL_H
#define SLUICE_SCHEMA_VALIDATOR_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format.h"
#include "regex.h"
#include "validator.h"

/* Instance type bits. A real with an integral value counts as an integer for
 * `type`, but keeps T_REAL here. */
enum {
    T_NULL = 1,
    T_BOOL = 2,
    T_INT = 4,
    T_REAL = 8,
    T_STR = 16,
    T_ARR = 32,
    T_OBJ = 64,
    T_NUM = T_INT | T_REAL,
    T_ANY = 127,
};

typedef enum {
    KW_TYPE,
    KW_CONST,
    KW_ENUM,
    KW_MIN_LENGTH,
    KW_MAX_LENGTH,
    KW_PATTERN,
    KW_FORMAT,
    KW_MINIMUM,
    KW_MAXIMUM,
    KW_EXCL_MINIMUM,
    KW_EXCL_MAXIMUM,
    KW_MULTIPLE_OF,
    KW_REQUIRED,
    KW_MIN_PROPERTIES,
    KW_MAX_PROPERTIES,
    KW_DEPENDENT_REQUIRED,
    KW_PROPS,
    KW_PROPERTY_NAMES,
    KW_MIN_ITEMS,
    KW_MAX_ITEMS,
    KW_UNIQUE_ITEMS,
    KW_ITEMS,
    KW_CONTAINS,
    KW_REF,
    KW_DYNAMIC_REF,
    KW_ALL_OF,
    KW_ANY_OF,
    KW_ONE_OF,
    KW_NOT,
    KW_IF,
    KW_DEPENDENT_SCHEMAS,
    KW_UNEVALUATED_PROPERTIES,
    KW_UNEVALUATED_ITEMS,
} kw_kind;

typedef struct snode snode;
typedef struct resource resource;

typedef struct prop_ent {
    const char *name; /* borrowed from the document */
    size_t len;       /* bytes in name */
    uint32_t hash;    /* prop_hash(name, len) */
    bool required;    /* listed in `required` */
    snode *sub;       /* its `properties` schema, or NULL for a name only `required` lists */
} prop_ent;

typedef struct pattern_ent {
    regex *re;  /* owned */
    snode *sub; /* the schema for matching names */
} pattern_ent;

typedef struct strlist {
    const char **s; /* borrowed strings; owned array */
    size_t *len;    /* their byte lengths; owned array */
    size_t n;       /* entries */
} strlist;

typedef struct props_kw {
    prop_ent *props;   /* `properties` then required-only names, owned array */
    size_t nprops;     /* entries in props */
    strlist req;       /* `required` (n = 0 when absent) */
    uint32_t *slots;   /* open-addressing table: index+1 into props, 0 = empty; owned */
    uint32_t mask;     /* slots has mask+1 entries */
    pattern_ent *pats; /* `patternProperties`, owned array */
    size_t npats;      /* entries in pats */
    snode *additional; /* `additionalProperties`, or NULL */
} props_kw;

typedef struct dep_req {
    const char *name; /* the trigger property (borrowed) */
    size_t len;       /* bytes in name */
    strlist deps;     /* properties it requires */
} dep_req;

typedef struct dep_schema {
    const char *name; /* the trigger property (borrowed) */
    size_t len;       /* bytes in name */
    snode *sub;       /* the schema applied to the whole object */
} dep_schema;

typedef struct kw {
    kw_kind kind;
    uint8_t applies;  /* T_* bits of the instances this keyword looks at */
    const char *name; /* the keyword as it appears in errors (static) */
    char *msg;        /* the violation message, built once (type, const, enum, format); owned */
    union {
        unsigned types; /* KW_TYPE: T_* bits; T_INT alone means "integer" */
        json_t *value;  /* KW_CONST, and the limit of the number keywords */
        struct {
            json_t **v; /* KW_ENUM values (borrowed; owned array) */
            size_t n;
        } en;
        size_t count; /* min/max Length, Items, Properties */
        regex *re;    /* KW_PATTERN (owned) */
        struct {
            format_fn fn;
            const char *name;        /* borrowed */
            unsigned steps_per_byte; /* what a check costs the budget (validator.h) */
        } fmt;
        strlist req;     /* KW_REQUIRED */
        props_kw *props; /* KW_PROPS (owned) */
        struct {
            dep_req *e; /* owned array */
            size_t n;
        } depreq;
        struct {
            dep_schema *e; /* owned array */
            size_t n;
        } depsch;
        struct {
            snode **prefix; /* prefixItems (owned array) */
            size_t nprefix;
            snode *rest; /* items, or NULL */
        } items;
        struct {
            snode *sub;
            size_t min; /* minContains (default 1) */
            size_t max; /* maxContains (SIZE_MAX when absent) */
        } contains;
        struct {
            snode **v; /* allOf/anyOf/oneOf (owned array) */
            size_t n;
        } list;
        snode *sub; /* not, propertyNames, unevaluated*, $ref */
        struct {
            snode *cond, *then, *els; /* then/els may be NULL */
        } ifs;
        struct {
            snode *target;      /* static resolution */
            const char *anchor; /* dynamic anchor name, or NULL: acts as $ref */
        } dyn;
    } u;
} kw;

enum {
    SN_TRUE,   /* the boolean schema true */
    SN_FALSE,  /* the boolean schema false */
    SN_SCHEMA, /* an object schema */
};

enum {
    SNF_UNEVAL_PROPS = 1, /* has unevaluatedProperties: collect property annotations */
    SNF_UNEVAL_ITEMS = 2, /* has unevaluatedItems: collect item annotations */
};

struct snode {
    uint8_t kind;  /* SN_* */
    uint8_t flags; /* SNF_* */
    kw *kws;       /* owned, nkw entries, evaluation order */
    uint32_t nkw;
    const resource *res;    /* the schema resource the node belongs to */
    const char *dyn_anchor; /* its $dynamicAnchor (borrowed), or NULL */
};

typedef struct dyn_anchor {
    const char *name; /* borrowed */
    snode *node;
} dyn_anchor;

struct resource {
    char *uri;       /* absolute URI, no fragment; owned */
    json_t *root;    /* the resource's root schema (borrowed from the document) */
    char *path;      /* JSON Pointer of root in its document, for errors; owned */
    dyn_anchor *dyn; /* $dynamicAnchors defined in this resource; owned array */
    size_t ndyn;
};

struct schema {
    json_t *doc;        /* private deep copy of the schema document; owned */
    json_t *extra_docs; /* other documents referenced (the embedded meta-schemas); owned array */
    snode *root;
    snode **nodes; /* every object node, owned */
    size_t nnodes;
    resource **res; /* every resource, owned */
    size_t nres;
    bool dynamic; /* some $dynamicRef resolves dynamically: track the scope */
};

/* Statically allocated boolean schema nodes (never freed). */
extern snode schema_node_true, schema_node_false;

/* A hash of a property name for props_kw lookups: the length and the first
 * and last eight bytes (collisions only cost a memcmp). */
static inline uint32_t prop_hash(const char *s, size_t n)
{
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        a = x;
        b = y;
    } else {
        for (size_t i = 0; i < n; i++)
            a = (a << 8) | (unsigned char)s[i];
    }
    uint64_t h = (a ^ (uint64_t)n) * 0x9E3779B97F4A7C15ull;
    h ^= (b + (h >> 31)) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

/* The instance type bits of `v`. */
static inline unsigned inst_type(const json_t *v)
{
    static const uint8_t bits[] = {
        [JSON_OBJECT] = T_OBJ, [JSON_ARRAY] = T_ARR, [JSON_STRING] = T_STR, [JSON_INTEGER] = T_INT,
        [JSON_REAL] = T_REAL,  [JSON_TRUE] = T_BOOL, [JSON_FALSE] = T_BOOL, [JSON_NULL] = T_NULL,
    };
    return bits[json_typeof(v)];
}

/* --- validator_uri.c ------------------------------------------------------ */

/* Resolves URI reference `ref` against the absolute URI `base` (RFC 3986
 * §5.2, with dot-segment removal). Returns a new string (caller frees). */
char *validator_uri_resolve(const char *base, const char *ref);

/* Splits `uri` at '#': returns the part before it (caller frees) and sets
 * *fragment to a new string with the percent-decoded fragment, or NULL when
 * there is no '#' (caller frees). */
char *validator_uri_split(const char *uri, char **fragment);

/* True when `uri` has a scheme (is absolute, possibly with a fragment). */
bool validator_uri_is_absolute(const char *uri);

/* --- validator_metaschema.c ----------------------------------------------- */

/* The embedded text of a well-known document (the 2020-12 meta-schema and its
 * vocabularies) for `uri` (no fragment), or NULL. Static storage. */
const char *validator_metaschema_text(const char *uri);

#endif

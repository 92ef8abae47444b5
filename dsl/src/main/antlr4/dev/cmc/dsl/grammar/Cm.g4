// The .cm language: a list of blocks, each `NAME [LABEL] { key = value; ... }`.
// No actions here: the AST builder, validation and diagnostics are separate steps.
grammar Cm;

file   : block* EOF ;
block  : kind=IDENT label=IDENT? '{' entry* '}' ;
entry  : key=IDENT '=' value ';' ;
value  : NUMBER                                   # number
       | STRING                                   # string
       | 'true'                                   # true
       | 'false'                                  # false
       | 'auto'                                   # auto
       | IDENT                                    # ident
       | '[' ( value ( ',' value )* ','? )? ']'   # list
       ;

// A single value on its own, for `--set block.key=VALUE` overrides.
loneValue : value EOF ;

NUMBER  : '-'? DIGITS ( '.' DIGITS? )? EXPONENT?
        | '-'? '.' DIGITS EXPONENT? ;
fragment DIGITS   : [0-9]+ ;
fragment EXPONENT : [eE] [+-]? DIGITS ;
STRING  : '"' ( ~["\\\r\n] | '\\' . )* '"' ;
IDENT   : [a-zA-Z_] [a-zA-Z_0-9]* ;

LINE_COMMENT  : '//' ~[\r\n]* -> skip ;
BLOCK_COMMENT : '/*' .*? '*/' -> skip ;
WS            : [ \t\r\n]+ -> skip ;
// Anything else is one bad character, reported by the parser with its position.
ERROR_CHAR    : . ;

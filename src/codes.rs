//! The condition-code dictionary of rules.md, in table order.
//!
//! The declaration order of [`Code`] is the order of the spec's tables, so
//! sorting problems by `(record, column, code)` gives the order rules.md asks for.

macro_rules! codes {
    ($($variant:ident = $code:literal, $narrative:literal;)*) => {
        /// A condition code with its fixed narrative.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),* }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The three characters written on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            /// The narrative written left-justified in the 40-character field.
            pub fn narrative(self) -> &'static str {
                match self { $(Code::$variant => $narrative),* }
            }
        }
    };
}

codes! {
    X01 = "X01", "RECORD NOT 80 PRINTABLE CHARACTERS";
    X02 = "X02", "DATA FOUND IN FILLER";
    X03 = "X03", "BATCH ENVELOPE OUT OF SEQUENCE";
    X04 = "X04", "TRAILER DOES NOT MATCH HEADER";
    X05 = "X05", "BLOCK RECORD COUNT MISMATCH";
    X06 = "X06", "UNKNOWN APPLICATION IDENTIFIER";
    X07 = "X07", "APPLICATION NOT ALLOWED FOR SENDER";
    X08 = "X08", "SENDER NOT AUTHORIZED";
    X09 = "X09", "FILER CODE NOT AUTHORIZED FOR SENDER";
    X10 = "X10", "RECORD ID NOT VALID FOR APPLICATION";
    X11 = "X11", "RECORD OUT OF SEQUENCE";
    X12 = "X12", "ENVELOPE FIELD MISSING OR INVALID";
    X13 = "X13", "BATCH REFERENCE REUSED";
    X14 = "X14", "BLOCK HAS NO TRANSACTIONS";
    BatchRejected = "999", "BATCH REJECTED";

    CertificateAccepted = "000", "CERTIFICATE ACCEPTED";
    G01 = "G01", "IOR NUMBER MISSING";
    G02 = "G02", "IOR NUMBER INVALID";
    G03 = "G03", "CERTIFICATE ALREADY ON FILE";
    G04 = "G04", "CERTIFICATE NOT ON FILE";
    G05 = "G05", "CERTIFICATE CANCELLED";
    G06 = "G06", "COUNTRY DOES NOT MATCH SENDER";
    G07 = "G07", "CERTIFICATE NUMBER INVALID";
    G08 = "G08", "ACTION CODE INVALID";
    G09 = "G09", "PROGRAM CODE INVALID";
    G10 = "G10", "HTS COVERAGE INVALID";
    G11 = "G11", "QUANTITY INVALID";
    G12 = "G12", "UNIT OF MEASURE INVALID";
    G13 = "G13", "ISSUE DATE INVALID";
    G14 = "G14", "EXPIRY DATE INVALID";
    G15 = "G15", "QUOTA YEAR INVALID";
    G16 = "G16", "EXPORTER NAME MISSING";
    G17 = "G17", "QUANTITY BELOW QUANTITY USED";
    G18 = "G18", "UNIT CANNOT CHANGE AFTER USE";
    CertificateRejected = "999", "CERTIFICATE REJECTED";

    EntryAccepted = "000", "ENTRY SUMMARY ACCEPTED";
    E01 = "E01", "ENTRY NUMBER INVALID";
    E02 = "E02", "ENTRY ALREADY ON FILE";
    E03 = "E03", "ENTRY NOT ON FILE";
    E04 = "E04", "ENTRY NUMBER PREVIOUSLY DELETED";
    E05 = "E05", "IOR NUMBER MISSING OR INVALID";
    E06 = "E06", "ENTRY TYPE NOT ELIGIBLE FOR QUOTA";
    E07 = "E07", "FILER CODE DOES NOT MATCH BLOCK";
    E08 = "E08", "ACTION CODE INVALID";
    E09 = "E09", "LINE NUMBER INVALID OR OUT OF ORDER";
    E10 = "E10", "COUNTRY OF ORIGIN INVALID";
    E11 = "E11", "HTS NUMBER INVALID";
    E12 = "E12", "QUANTITY OR UNIT INVALID";
    E13 = "E13", "PORT CODE MISSING";
    E14 = "E14", "MORE THAN ONE 52 RECORD ON LINE";
    E15 = "E15", "CERTIFICATE NUMBER INVALID";
    Q01 = "Q01", "CERTIFICATE NOT ON FILE";
    Q11 = "Q11", "COUNTRY OF ORIGIN DOES NOT MATCH CERT";
    Q12 = "Q12", "CERTIFICATE TYPE DOES NOT MATCH PROGRAM";
    Q06 = "Q06", "HTS NOT COVERED BY CERTIFICATE";
    Q07 = "Q07", "UNIT DOES NOT MATCH CERTIFICATE";
    Q08 = "Q08", "QUANTITY MUST BE GREATER THAN ZERO";
    Q03 = "Q03", "CERTIFICATE CANCELLED";
    Q04 = "Q04", "CERTIFICATE EXPIRED";
    Q10 = "Q10", "CERTIFICATE NOT YET ISSUED";
    Q09 = "Q09", "QUOTA YEAR DOES NOT MATCH ENTRY DATE";
    Q02 = "Q02", "IOR DOES NOT MATCH CERTIFICATE";
    Q05 = "Q05", "QUANTITY EXCEEDS CERTIFICATE BALANCE";
    C00 = "C00", "CLAIM APPLIED";
    EntryRejected = "999", "ENTRY SUMMARY REJECTED";

    R01 = "R01", "QUERY TYPE INVALID";
    R02 = "R02", "IOR NUMBER INVALID";
    R03 = "R03", "IOR NOT AUTHORIZED FOR FILER";
    R04 = "R04", "CERTIFICATE NOT ON FILE";
    R05 = "R05", "COUNTRY DOES NOT MATCH SENDER";
    R06 = "R06", "CONDITION CODE INVALID";
    R07 = "R07", "DATE RANGE INVALID";
    R08 = "R08", "COUNTRY OR CERTIFICATE NUMBER MISSING";
    R09 = "R09", "QUOTA YEAR INVALID";
}

impl Code {
    /// Looks a code up by its wire form among the codes a layout may name
    /// (the `999`/`000` family codes are never named by a layout).
    pub fn from_wire(s: &str) -> Option<Code> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s && !matches!(c.as_str(), "000" | "999"))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narratives_fit_their_field() {
        for c in Code::ALL {
            assert!(c.narrative().len() <= 40, "{c:?}");
            assert_eq!(c.as_str().len(), 3);
        }
    }

    #[test]
    fn claim_codes_sort_in_table_order() {
        let mut v = vec![Code::Q05, Code::Q02, Code::Q07, Code::Q01, Code::Q11];
        v.sort();
        assert_eq!(v, vec![Code::Q01, Code::Q11, Code::Q07, Code::Q02, Code::Q05]);
    }

    #[test]
    fn wire_lookup() {
        assert_eq!(Code::from_wire("X12"), Some(Code::X12));
        assert_eq!(Code::from_wire("999"), None);
    }
}

package recsys.udf;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import java.time.LocalDate;
import java.time.Month;
import java.time.Year;
import java.util.Arrays;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF1;

/**
 * Reads the JSON value of one Kafka record in a single pass and returns, for each field of a
 * sales event, its JSON type and its value. The checks that turn these into a quarantine reason
 * live in spark_app/stream/validate.py; this class only parses (and names the first blank id,
 * as {@link #firstBlankId} says).
 *
 * <p>Registered by validate.py as a Spark SQL function returning {@link #SCHEMA}. One streaming
 * parse with Jackson (the JSON library Spark itself ships) replaces building a VARIANT and
 * extracting each field from it: the whole validation runs 3.3x faster (benchmarks/RESULTS.md).
 *
 * <p>What counts as malformed: a value that is not well-formed UTF-8 (checked first, over the
 * whole value: Jackson itself reads an overlong {@code C0 AF} as {@code /}), anything Jackson's
 * default (strict) settings refuse (comments, single quotes, NaN, leading zeros, nesting or
 * numbers beyond its limits...), an object with a duplicate key at any depth, an empty value,
 * anything after the first JSON value, and an id or timestamp string holding a lone UTF-16
 * surrogate (an escape such as {@code "\ud800"} that encodes no character: it has no UTF-8
 * form, and two such ids would be stored as the same text).
 */
public final class SaleFields implements UDF1<byte[], Row> {
  private static final long serialVersionUID = 1L;

  /** The returned struct, as Spark DDL. The order of the fields is the order of the Row. */
  public static final String SCHEMA =
      "json STRING, "
          + "event_id_type STRING, user_id_type STRING, product_id_type STRING, "
          + "quantity_type STRING, timestamp_type STRING, price_type STRING, "
          + "rating_type STRING, "
          + "event_id STRING, user_id STRING, product_id STRING, timestamp_text STRING, "
          + "quantity BIGINT, timestamp_millis BIGINT, price DOUBLE, timestamp_micros BIGINT, "
          + "blank_id STRING, rating DOUBLE";

  /** Values of the {@code json} field: the shape of the whole record. */
  public static final String OBJECT = "object";
  public static final String NOT_AN_OBJECT = "not_an_object";
  public static final String MALFORMED = "malformed";

  /**
   * Values of the {@code *_type} fields. A field that is absent has a null type; a JSON null
   * has the type "null". An integer beyond 64 bits has the type "integer" and a null value.
   */
  static final String STRING = "string";
  static final String INTEGER = "integer";
  static final String FLOAT = "float";
  static final String BOOLEAN = "boolean";
  static final String NULL = "null";
  static final String OBJECT_TYPE = "object";
  static final String ARRAY = "array";

  // Positions in the Row (see SCHEMA).
  private static final int SHAPE = 0;
  private static final String[] FIELDS = {
    "event_id", "user_id", "product_id", "quantity", "timestamp", "price", "rating"
  };
  private static final int TYPES = 1; // FIELDS[i]'s type is at TYPES + i
  private static final int EVENT_ID = 8;
  private static final int USER_ID = 9;
  private static final int PRODUCT_ID = 10;
  private static final int TIMESTAMP_TEXT = 11;
  private static final int QUANTITY = 12;
  private static final int TIMESTAMP_MILLIS = 13;
  private static final int PRICE = 14;
  private static final int TIMESTAMP_MICROS = 15;
  private static final int BLANK_ID = 16;
  private static final int RATING = 17;
  private static final int WIDTH = 18;

  private static final JsonFactory JSON =
      JsonFactory.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

  @Override
  public Row call(byte[] value) {
    Object[] row = new Object[WIDTH];
    if (value == null || !isWellFormedUtf8(value)) { // no value, or not UTF-8 text
      return malformed(row);
    }
    try (JsonParser parser = JSON.createParser(value)) {
      JsonToken first = parser.nextToken();
      if (first == JsonToken.START_OBJECT) {
        readObject(parser, row);
        row[SHAPE] = OBJECT;
        row[BLANK_ID] = firstBlankId(row);
      } else if (first != null) {
        parser.skipChildren();
        row[SHAPE] = NOT_AN_OBJECT;
      }
      if (first == null || parser.nextToken() != null) { // empty, or something after the value
        return malformed(row);
      }
      return RowFactory.create(row);
    } catch (Exception e) { // Jackson's parse errors; a bad record must not fail the batch
      return malformed(row);
    }
  }

  /**
   * Whether {@code bytes} is well-formed UTF-8 (the Unicode standard's table 3-7): no overlong
   * form, no surrogate, nothing above U+10FFFF, no sequence cut short. ASCII costs one compare
   * per byte.
   */
  static boolean isWellFormedUtf8(byte[] bytes) {
    int i = 0;
    int n = bytes.length;
    while (i < n) {
      int b = bytes[i] & 0xFF;
      if (b < 0x80) {
        i++;
        continue;
      }
      int need;
      int low = 0x80;
      int high = 0xBF; // the allowed range of the first continuation byte
      if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
      } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0) low = 0xA0; // overlong
        if (b == 0xED) high = 0x9F; // surrogates
      } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0) low = 0x90; // overlong
        if (b == 0xF4) high = 0x8F; // above U+10FFFF
      } else {
        return false; // a continuation byte, C0, C1 or F5..FF
      }
      if (i + need >= n) return false; // cut short
      int first = bytes[i + 1] & 0xFF;
      if (first < low || first > high) return false;
      for (int k = 2; k <= need; k++) {
        int next = bytes[i + k] & 0xFF;
        if (next < 0x80 || next > 0xBF) return false;
      }
      i += need + 1;
    }
    return true;
  }

  private static Row malformed(Object[] row) {
    Arrays.fill(row, null);
    row[SHAPE] = MALFORMED;
    return RowFactory.create(row);
  }

  /** Reads the top-level object after its START_OBJECT, keeping the fields a sale has. */
  private static void readObject(JsonParser parser, Object[] row) throws java.io.IOException {
    while (parser.nextToken() == JsonToken.FIELD_NAME) {
      int field = indexOf(parser.currentName());
      JsonToken token = parser.nextToken();
      if (field < 0) {
        parser.skipChildren(); // still parsed, so malformed content is still caught
        continue;
      }
      row[TYPES + field] = typeOf(token);
      switch (token) {
        case START_OBJECT, START_ARRAY -> parser.skipChildren();
        case VALUE_STRING -> keepString(field, parser.getText(), row);
        case VALUE_NUMBER_INT -> keepInteger(field, parser, row);
        case VALUE_NUMBER_FLOAT -> keepFloat(field, parser, row);
        default -> { }
      }
    }
  }

  private static int indexOf(String name) {
    for (int i = 0; i < FIELDS.length; i++) {
      if (FIELDS[i].equals(name)) return i;
    }
    return -1;
  }

  private static String typeOf(JsonToken token) {
    return switch (token) {
      case VALUE_STRING -> STRING;
      case VALUE_NUMBER_INT -> INTEGER;
      case VALUE_NUMBER_FLOAT -> FLOAT;
      case VALUE_TRUE, VALUE_FALSE -> BOOLEAN;
      case VALUE_NULL -> NULL;
      case START_OBJECT -> OBJECT_TYPE;
      case START_ARRAY -> ARRAY;
      default -> throw new IllegalStateException("unexpected JSON token " + token);
    };
  }

  private static void keepString(int field, String text, Object[] row)
      throws java.io.IOException {
    if (hasLoneSurrogate(text)) {
      throw new java.io.CharConversionException("a string holds a lone UTF-16 surrogate");
    }
    switch (FIELDS[field]) {
      case "event_id" -> row[EVENT_ID] = text;
      case "user_id" -> row[USER_ID] = text;
      case "product_id" -> row[PRODUCT_ID] = text;
      case "timestamp" -> {
        row[TIMESTAMP_TEXT] = text;
        row[TIMESTAMP_MICROS] = isoInstantMicros(text);
      }
      default -> { } // a string quantity, price or rating: its type says enough
    }
  }

  /**
   * The first of user_id, product_id, event_id (in that order) whose string is blank, or null.
   * Blank: empty, or only characters that {@link Character#isWhitespace}, {@link
   * Character#isSpaceChar} or U+0085 accept: the set of Python's str.isspace(), declared as
   * BLANK_CHARACTERS in recsys_contract/events.py (tests/unit/test_stream_validate.py sends
   * each of them).
   */
  static String firstBlankId(Object[] row) {
    if (isBlank((String) row[USER_ID])) return "user_id";
    if (isBlank((String) row[PRODUCT_ID])) return "product_id";
    if (isBlank((String) row[EVENT_ID])) return "event_id";
    return null;
  }

  static boolean isBlank(String text) {
    if (text == null) return false; // absent or not a string: another check names it
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (!Character.isWhitespace(c) && !Character.isSpaceChar(c) && c != '\u0085') return false;
    }
    return true;
  }

  /** Whether {@code text} holds a surrogate that is not half of a pair (no Unicode character). */
  static boolean hasLoneSurrogate(String text) {
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (Character.isHighSurrogate(c) && i + 1 < text.length()
          && Character.isLowSurrogate(text.charAt(i + 1))) {
        i++; // a valid pair
      } else if (Character.isSurrogate(c)) {
        return true;
      }
    }
    return false;
  }

  private static void keepFloat(int field, JsonParser parser, Object[] row)
      throws java.io.IOException {
    switch (FIELDS[field]) {
      case "price" -> row[PRICE] = parser.getDoubleValue();
      case "rating" -> row[RATING] = parser.getDoubleValue();
      default -> { } // a float quantity or timestamp: its type says enough
    }
  }

  private static void keepInteger(int field, JsonParser parser, Object[] row)
      throws java.io.IOException {
    boolean fits = switch (parser.getNumberType()) {
      case INT, LONG -> true;
      default -> false; // BIG_INTEGER: the value stays null
    };
    switch (FIELDS[field]) {
      case "quantity" -> row[QUANTITY] = fits ? parser.getLongValue() : null;
      case "timestamp" -> row[TIMESTAMP_MILLIS] = fits ? parser.getLongValue() : null;
      case "price" -> row[PRICE] = parser.getDoubleValue();
      case "rating" -> row[RATING] = parser.getDoubleValue();
      default -> { } // an integer id: its type says enough
    }
  }

  /**
   * The instant of a timestamp written exactly as {@code YYYY-MM-DDTHH:MM:SS[.f{1,6}]} followed
   * by {@code Z} or {@code +HH:MM} / {@code -HH:MM}, in microseconds since the epoch; null for
   * any other text, which validate.py then gives to Spark's own cast. For every text this
   * accepts, the result equals Spark's {@code CAST(text AS TIMESTAMP)}: a full date and time
   * with an explicit offset, no session time zone involved (tests/unit/test_stream_validate.py
   * compares the two on many generated texts). It only saves Spark's general parse and the
   * regular expression before it: the validation of 1M records took 1.09 s with them and 0.78 s
   * without (benchmarks/RESULTS.md).
   */
  static Long isoInstantMicros(String text) {
    int n = text.length();
    if (n < 20 || n > 32) return null;
    int year = digits(text, 0, 4);
    int month = digits(text, 5, 2);
    int day = digits(text, 8, 2);
    int hour = digits(text, 11, 2);
    int minute = digits(text, 14, 2);
    int second = digits(text, 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23
        || minute < 0 || minute > 59 || second < 0 || second > 59 || text.charAt(4) != '-' || text.charAt(7) != '-'
        || text.charAt(10) != 'T' || text.charAt(13) != ':' || text.charAt(16) != ':'
        || day > Month.of(month).length(Year.isLeap(year))) {
      return null; // (digits() returns -1 for a non-digit, which fails the checks above)
    }
    int at = 19;
    long fraction = 0;
    if (text.charAt(at) == '.') {
      int start = ++at;
      while (at < n && at - start < 7 && text.charAt(at) >= '0' && text.charAt(at) <= '9') {
        fraction = fraction * 10 + (text.charAt(at) - '0');
        at++;
      }
      int width = at - start;
      if (width < 1 || width > 6) return null;
      for (int i = width; i < 6; i++) fraction *= 10;
    }
    long offsetSeconds;
    if (at == n - 1 && text.charAt(at) == 'Z') {
      offsetSeconds = 0;
    } else if (at == n - 6 && (text.charAt(at) == '+' || text.charAt(at) == '-')
        && text.charAt(at + 3) == ':') {
      int hours = digits(text, at + 1, 2);
      int minutes = digits(text, at + 4, 2);
      if (hours < 0 || minutes < 0 || minutes > 59 || hours * 60 + minutes > 18 * 60) {
        return null;
      }
      offsetSeconds = (text.charAt(at) == '-' ? -1L : 1L) * (hours * 3600L + minutes * 60L);
    } else {
      return null;
    }
    long epochDay = LocalDate.of(year, month, day).toEpochDay();
    long seconds = epochDay * 86_400L + hour * 3600L + minute * 60L + second - offsetSeconds;
    return seconds * 1_000_000L + fraction;
  }

  /** The number written by text[start, start + count) in ASCII digits, or -1. */
  private static int digits(String text, int start, int count) {
    int value = 0;
    for (int i = start; i < start + count; i++) {
      char c = text.charAt(i);
      if (c < '0' || c > '9') return -1;
      value = value * 10 + (c - '0');
    }
    return value;
  }
}

package shop.interop;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Predicate;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.message.Encoding;
import io.cloudevents.jackson.JsonFormat;
import io.cloudevents.kafka.CloudEventSerializer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.kafka.support.serializer.JsonSerializer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;

/** The service as its neighbours meet it: the runner's settings, REST seeding, Kafka producers and readers. */
final class Interop {
    /** How long one expected record may take; the service answers in well under a second when healthy. */
    static final Duration WAIT = Duration.ofSeconds(30);

    /** Like a Spring Boot neighbour's mapper: ISO instants, and fields it does not know are ignored. */
    static final ObjectMapper JSON = JsonMapper.builder()
        .addModule(new JavaTimeModule())
        .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .build();

    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    private Interop() {}

    // ---- settings from run.sh -------------------------------------------------------------

    /** Missing means the suite was started by hand: a failure, so a misconfigured CI cannot pass by skipping. */
    static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isBlank()) {
            fail(name + " is not set. These tests talk to a running inventory service: run `just test-interop`,"
                + " which starts one and sets KAFKA_BOOTSTRAP_SERVERS, INVENTORY_URL, ADMIN_TOKEN, ORDER_TOPIC,"
                + " PAYMENT_TOPIC and INVENTORY_TOPIC.");
        }
        return value;
    }

    static String bootstrap() { return env("KAFKA_BOOTSTRAP_SERVERS"); }
    static String orderTopic() { return env("ORDER_TOPIC"); }
    static String paymentTopic() { return env("PAYMENT_TOPIC"); }
    static String inventoryTopic() { return env("INVENTORY_TOPIC"); }

    /** Ids of products, orders and events never seen before, so tests share no state. */
    static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().replace("-", "").substring(0, 12);
    }

    static long uniqueNumber() {
        // Above 2^31, so only a long holds it, and below 2^53, so no JSON reader rounds it.
        return ThreadLocalRandom.current().nextLong(10_000_000_000L, 1L << 52);
    }

    /** A W3C trace context of a trace that is not anyone else's. */
    static String traceparent() {
        String hex = UUID.randomUUID().toString().replace("-", "") + UUID.randomUUID().toString().replace("-", "");
        return "00-" + hex.substring(0, 32) + "-" + hex.substring(32, 48) + "-01";
    }

    // ---- REST -----------------------------------------------------------------------------

    /** Adds stock as an operator does; the product is created on first use. */
    static JsonNode seed(String productId, int quantity) throws Exception {
        String body = JSON.writeValueAsString(Map.of("productId", productId, "quantity", quantity));
        HttpRequest request = HttpRequest.newBuilder(URI.create(env("INVENTORY_URL") + "/api/inventory/add"))
            .header("Authorization", "Bearer " + env("ADMIN_TOKEN"))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", UUID.randomUUID().toString())
            .timeout(Duration.ofSeconds(10))
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build();
        HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode(), "POST /api/inventory/add " + body + " answered " + response.body());
        return JSON.readTree(response.body());
    }

    /** `GET /api/inventory/{productId}`: {productId, quantity, reserved, available, version, updatedAt}. */
    static JsonNode stock(String productId) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(env("INVENTORY_URL") + "/api/inventory/" + productId))
            .timeout(Duration.ofSeconds(10))
            .GET()
            .build();
        HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode(), "GET /api/inventory/" + productId + " answered " + response.body());
        return JSON.readTree(response.body());
    }

    /** For effects that emit no event (a payment): the stock as soon as it shows them, or a failure after WAIT. */
    static JsonNode awaitStock(String productId, Predicate<JsonNode> done, String what) throws Exception {
        Instant deadline = Instant.now().plus(WAIT);
        JsonNode last = stock(productId);
        while (!done.test(last)) {
            if (Instant.now().isAfter(deadline)) {
                fail("within " + WAIT.toSeconds() + " s, " + productId + " did not show " + what + "; it is " + last);
            }
            Thread.sleep(200);
            last = stock(productId);
        }
        return last;
    }

    // ---- producing ------------------------------------------------------------------------

    private static Map<String, Object> producerConfig(Class<?> valueSerializer) {
        Map<String, Object> config = new HashMap<>();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, valueSerializer);
        return config;
    }

    /** Sends and waits for the broker's acknowledgement, so the caller knows where the record landed. */
    private static <V> RecordMetadata send(Map<String, Object> config, String topic, String key, V value,
                                           Map<String, String> headers) throws Exception {
        try (KafkaProducer<String, V> producer = new KafkaProducer<>(config)) {
            ProducerRecord<String, V> record = new ProducerRecord<>(topic, key, value);
            headers.forEach((name, v) -> record.headers().add(name, v.getBytes(StandardCharsets.UTF_8)));
            return producer.send(record).get();
        }
    }

    /** Any bytes at all, for records no library would write. */
    static RecordMetadata sendRaw(String topic, String key, String value, Map<String, String> headers) throws Exception {
        return send(producerConfig(StringSerializer.class), topic, key, value, headers);
    }

    /** As a Spring service sends: `JsonSerializer` with its defaults (`__TypeId__` = the class's name). */
    static RecordMetadata sendSpring(String topic, String key, Object event) throws Exception {
        return sendSpring(topic, key, event, Map.of(), Map.of());
    }

    /**
     * `serializerConfig` is what a Spring Boot service puts under `spring.kafka.producer.properties`
     * (e.g. `spring.json.type.mapping`); `headers` are added to the record, as a tracing agent does.
     */
    static RecordMetadata sendSpring(String topic, String key, Object event, Map<String, String> headers,
                                     Map<String, Object> serializerConfig) throws Exception {
        Map<String, Object> config = producerConfig(JsonSerializer.class);
        config.putAll(serializerConfig);
        return send(config, topic, key, event, headers);
    }

    /** As a service using the CloudEvents SDK sends, in binary or structured (JSON event format) mode. */
    static RecordMetadata sendCloudEvent(String topic, String key, CloudEvent event, Encoding encoding) throws Exception {
        Map<String, Object> config = producerConfig(CloudEventSerializer.class);
        config.put(CloudEventSerializer.ENCODING_CONFIG, encoding);
        config.put(CloudEventSerializer.EVENT_FORMAT_CONFIG, JsonFormat.CONTENT_TYPE);
        return send(config, topic, key, event, Map.of());
    }

    // ---- reading --------------------------------------------------------------------------

    static Reader<byte[]> read(String topic) {
        return read(topic, Map.of());
    }

    static Reader<byte[]> read(String topic, Map<String, Object> extraConfig) {
        Map<String, Object> config = new HashMap<>(extraConfig);
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        return new Reader<>(topic, config);
    }

    /**
     * The next record the service produced for `orderId`, parsed. Every one is also checked for what
     * Spring's type mapping relies on: `__TypeId__` names the same type as `eventType`.
     */
    static Outcome outcome(Reader<byte[]> reader, String orderId) {
        ConsumerRecord<String, byte[]> record = reader.next(orderId, "the service's answer to order " + orderId);
        JsonNode json;
        try {
            json = JSON.readTree(record.value());
        } catch (Exception e) {
            return fail("the answer to order " + orderId + " is not JSON: " + text(record.value()));
        }
        Outcome outcome = new Outcome(record, json);
        assertNotNull(outcome.type(), "the answer to order " + orderId + " has no eventType: " + json);
        assertEquals(outcome.type(), outcome.header("__TypeId__"),
            "__TypeId__ must equal eventType (Spring consumers map on it): " + json);
        return outcome;
    }

    static String header(ConsumerRecord<?, ?> record, String name) {
        byte[] value = headerBytes(record, name);
        return value == null ? null : text(value);
    }

    static byte[] headerBytes(ConsumerRecord<?, ?> record, String name) {
        Header header = record.headers().lastHeader(name);
        return header == null ? null : header.value();
    }

    static String text(byte[] bytes) {
        return bytes == null ? null : new String(bytes, StandardCharsets.UTF_8);
    }

    /** A record the service produced, with its JSON body. */
    record Outcome(ConsumerRecord<String, byte[]> record, JsonNode json) {
        String type() { return text("eventType"); }

        String text(String field) {
            JsonNode node = json.get(field);
            return node == null || node.isNull() ? null : node.asText();
        }

        String header(String name) { return Interop.header(record, name); }

        /** The body read into a consumer's own record type, as a Jackson-based consumer would. */
        <T> T as(Class<T> type) throws Exception { return JSON.treeToValue(json, type); }
    }

    /**
     * Reads a whole topic, as a new consumer group would: a fresh group id and `earliest`, so it sees
     * records produced before it joined. Records are kept until asked for by key, so several orders
     * can be awaited in any order through one reader.
     */
    static final class Reader<V> implements AutoCloseable {
        private final String topic;
        private final KafkaConsumer<String, V> consumer;
        private final List<ConsumerRecord<String, V>> unread = new ArrayList<>();
        private int polled;

        Reader(String topic, Map<String, Object> config) {
            Map<String, Object> all = new HashMap<>();
            all.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
            all.put(ConsumerConfig.GROUP_ID_CONFIG, "interop-test-" + UUID.randomUUID());
            all.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            all.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            all.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            // A dead-letter topic may be created after we subscribe; notice it within a second.
            all.put(ConsumerConfig.METADATA_MAX_AGE_CONFIG, 1000);
            all.putAll(config);
            this.topic = topic;
            this.consumer = new KafkaConsumer<>(all);
            consumer.subscribe(List.of(topic));
        }

        /** The next record keyed `key`, or a failure saying what was awaited after {@link Interop#WAIT}. */
        ConsumerRecord<String, V> next(String key, String what) {
            Instant deadline = Instant.now().plus(WAIT);
            while (true) {
                for (Iterator<ConsumerRecord<String, V>> it = unread.iterator(); it.hasNext(); ) {
                    ConsumerRecord<String, V> record = it.next();
                    if (key.equals(record.key())) {
                        it.remove();
                        return record;
                    }
                }
                if (Instant.now().isAfter(deadline)) {
                    return fail("no record keyed " + key + " on " + topic + " within " + WAIT.toSeconds()
                        + " s; expected " + what + " (this reader has read " + polled + " records of the topic in all)");
                }
                poll();
            }
        }

        /** Fails if any (further) record keyed `key` arrives within `window`. */
        void expectNone(String key, Duration window, String why) {
            Instant deadline = Instant.now().plus(window);
            while (Instant.now().isBefore(deadline)) {
                poll();
            }
            List<String> extra = unread.stream()
                .filter(r -> key.equals(r.key()))
                .map(r -> r.value() instanceof byte[] bytes ? Interop.text(bytes) : String.valueOf(r.value()))
                .collect(Collectors.toList());
            if (!extra.isEmpty()) {
                fail(why + "; yet within " + window.toSeconds() + " s " + topic + " got, keyed " + key + ": " + extra);
            }
        }

        private void poll() {
            for (ConsumerRecord<String, V> record : consumer.poll(Duration.ofMillis(250))) {
                unread.add(record);
                polled++;
            }
        }

        @Override
        public void close() {
            consumer.close(Duration.ofSeconds(5));
        }
    }
}

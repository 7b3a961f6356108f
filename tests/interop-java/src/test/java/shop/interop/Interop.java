package shop.interop;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.function.Predicate;
import java.util.stream.Collectors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/** The service under test, as its neighbours reach it: environment, REST seeding, topics. */
public final class Interop {
    public static final ObjectMapper JSON = new ObjectMapper();
    public static final Duration WAIT = Duration.ofSeconds(30);
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    private Interop() {}

    /** A setting the runner passes; missing means the suite was not started by it. */
    public static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isBlank()) {
            fail(name + " is not set: run `just test-interop` (it starts the service and sets it)");
        }
        return value;
    }

    public static String bootstrap() { return env("KAFKA_BOOTSTRAP_SERVERS"); }
    public static String orderTopic() { return env("ORDER_TOPIC"); }
    public static String paymentTopic() { return env("PAYMENT_TOPIC"); }
    public static String inventoryTopic() { return env("INVENTORY_TOPIC"); }

    /** A fresh id with a readable prefix. */
    public static String id(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    /** Adds stock to a product through the REST API, as an operator would. */
    public static void stock(String productId, int quantity) throws Exception {
        String body = JSON.writeValueAsString(Map.of("productId", productId, "quantity", quantity));
        HttpRequest request = HttpRequest.newBuilder(URI.create(env("INVENTORY_URL") + "/api/inventory/add"))
            .header("Authorization", "Bearer " + env("ADMIN_TOKEN"))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", UUID.randomUUID().toString())
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build();
        HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode(), "POST /api/inventory/add: " + response.body());
    }

    /** `GET /api/inventory/{id}`. */
    public static JsonNode stockOf(String productId) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(env("INVENTORY_URL") + "/api/inventory/" + productId))
            .GET().build();
        HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
        assertEquals(200, response.statusCode(), "GET /api/inventory/" + productId + ": " + response.body());
        return JSON.readTree(response.body());
    }

    public static Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        return p;
    }

    /** Sends raw bytes with headers and waits for the broker's acknowledgement. */
    public static void sendRaw(String topic, String key, byte[] value, Map<String, String> headers) throws Exception {
        Properties p = producerProps();
        try (KafkaProducer<String, byte[]> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
            ProducerRecord<String, byte[]> record = new ProducerRecord<>(topic, key, value);
            headers.forEach((k, v) -> record.headers().add(k, v.getBytes(StandardCharsets.UTF_8)));
            producer.send(record).get();
        }
    }

    /** Reads a topic from its beginning, by partition assignment (no group to join). */
    public static final class Reader implements AutoCloseable {
        private final KafkaConsumer<String, byte[]> consumer;
        private final String topic;

        public Reader(String topic) { this(topic, Map.of()); }

        public Reader(String topic, Map<String, String> extra) {
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            p.putAll(extra);
            this.topic = topic;
            this.consumer = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer());
            List<TopicPartition> partitions = consumer.partitionsFor(topic, Duration.ofSeconds(30)).stream()
                .map(info -> new TopicPartition(topic, info.partition()))
                .collect(Collectors.toList());
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
        }

        /** The first record that `matches`, or a failure naming `what` after {@link #WAIT}. */
        public ConsumerRecord<String, byte[]> await(Predicate<ConsumerRecord<String, byte[]>> matches, String what) {
            Instant deadline = Instant.now().plus(WAIT);
            while (Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    if (matches.test(r)) {
                        return r;
                    }
                }
            }
            return fail("no record on " + topic + " within " + WAIT + " for " + what);
        }

        /** Every record that `matches` seen within `window`. */
        public List<ConsumerRecord<String, byte[]>> collect(Predicate<ConsumerRecord<String, byte[]>> matches, Duration window) {
            List<ConsumerRecord<String, byte[]>> found = new ArrayList<>();
            Instant deadline = Instant.now().plus(window);
            while (Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    if (matches.test(r)) {
                        found.add(r);
                    }
                }
            }
            return found;
        }

        @Override
        public void close() { consumer.close(); }
    }

    /** The next outcome for `orderId` on the inventory topic, as JSON. */
    public static ConsumerRecord<String, byte[]> outcome(Reader reader, String orderId) {
        return reader.await(r -> orderId.equals(r.key()), "the answer to order " + orderId);
    }

    public static JsonNode json(ConsumerRecord<String, byte[]> record) {
        try {
            return JSON.readTree(record.value());
        } catch (Exception e) {
            return fail("not JSON: " + new String(record.value(), StandardCharsets.UTF_8));
        }
    }

    public static String header(ConsumerRecord<String, byte[]> record, String name) {
        Header h = record.headers().lastHeader(name);
        return h == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }

    public static byte[] headerBytes(ConsumerRecord<String, byte[]> record, String name) {
        Header h = record.headers().lastHeader(name);
        return h == null ? null : h.value();
    }
}

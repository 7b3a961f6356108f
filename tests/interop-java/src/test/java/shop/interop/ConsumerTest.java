package shop.interop;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import com.shop.inventory.InventoryEvents;
import com.shop.order.event.Item;
import com.shop.order.event.OrderCancelledEvent;
import com.shop.order.event.OrderCreatedEvent;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;
import org.springframework.kafka.support.serializer.JsonDeserializer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.fail;
import static shop.interop.Interop.*;

/** Consumers of `inventory-events`: a Spring one with the standard type mapping, and a read_committed one. */
class ConsumerTest {

    @Test
    @SuppressWarnings({"deprecation", "removal"})
    void a_spring_consumer_maps_each_event_to_its_own_record_by_the_type_header() throws Exception {
        String product = id("p");
        stock(product, 2);
        String reserved = id("o");
        String failed = id("o");
        SpringProducerTest.springSend(orderTopic(), reserved, new OrderCreatedEvent(reserved, List.of(new Item(product, 2))));
        SpringProducerTest.springSend(orderTopic(), failed, new OrderCreatedEvent(failed, List.of(new Item(product, 1))));
        SpringProducerTest.springSend(orderTopic(), reserved, new OrderCancelledEvent(reserved));

        JsonDeserializer<Object> deserializer = new JsonDeserializer<>();
        deserializer.configure(Map.of(
            JsonDeserializer.TRUSTED_PACKAGES, "com.shop.inventory",
            JsonDeserializer.TYPE_MAPPINGS,
            "InventoryReservedEvent:" + InventoryEvents.InventoryReservedEvent.class.getName()
                + ",StockReservationFailedEvent:" + InventoryEvents.StockReservationFailedEvent.class.getName()
                + ",InventoryReleasedEvent:" + InventoryEvents.InventoryReleasedEvent.class.getName()), false);
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        List<Object> mine = new ArrayList<>();
        try (KafkaConsumer<String, Object> consumer = new KafkaConsumer<>(p, new StringDeserializer(), deserializer)) {
            List<TopicPartition> partitions = consumer.partitionsFor(inventoryTopic(), Duration.ofSeconds(30)).stream()
                .map(i -> new TopicPartition(inventoryTopic(), i.partition())).toList();
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Instant deadline = Instant.now().plus(WAIT);
            while (mine.size() < 3 && Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<String, Object> r : consumer.poll(Duration.ofMillis(200))) {
                    if (reserved.equals(r.key()) || failed.equals(r.key())) {
                        mine.add(r.value());
                    }
                }
            }
        }
        if (mine.size() < 3) {
            fail("expected a reservation, a failure and a release, got " + mine);
        }
        assertInstanceOf(InventoryEvents.InventoryReservedEvent.class, mine.stream()
            .filter(e -> e instanceof InventoryEvents.InventoryReservedEvent).findFirst().orElse(null));
        InventoryEvents.StockReservationFailedEvent failure = (InventoryEvents.StockReservationFailedEvent) mine.stream()
            .filter(e -> e instanceof InventoryEvents.StockReservationFailedEvent).findFirst()
            .orElseGet(() -> fail("no failure read as its record: " + mine));
        assertEquals("INSUFFICIENT_STOCK", failure.reason());
        assertEquals(1, failure.items().get(0).requested());
        assertEquals(0, failure.items().get(0).available());
        InventoryEvents.InventoryReleasedEvent release = (InventoryEvents.InventoryReleasedEvent) mine.stream()
            .filter(e -> e instanceof InventoryEvents.InventoryReleasedEvent).findFirst()
            .orElseGet(() -> fail("no release read as its record: " + mine));
        assertEquals("ORDER_CANCELLED", release.reason());
    }

    @Test
    void a_read_committed_consumer_sees_the_answers() throws Exception {
        String product = id("p");
        String order = id("o");
        stock(product, 1);
        try (Reader outcomes = new Reader(inventoryTopic(), Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
            SpringProducerTest.springSend(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 1))));
            assertEquals("InventoryReservedEvent", json(outcome(outcomes, order)).get("eventType").asText());
        }
    }
}
